"""`attach_images`: put the faces back into an annotations-only release from the user's own licensed copies.

Each source corpus is read through its own builder, so restored rows are byte-identical to the originals; the image
structs are gathered with one Arrow `take` per split, never decoded.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from seke_hf.columns import (
    CHAT_IMAGES_COLUMN,
    IMAGE_COLUMN,
    MESSAGES_COLUMN,
    column_values,
    dataset_from_arrays,
    file_columns,
)
from seke_hf.corpora import load_source
from seke_hf.corpus_roots import find_corpus_dirs

logger = logging.getLogger("seke_hf.release")

D = TypeVar("D", datasets.Dataset, datasets.DatasetDict)


class ImagesNotFound(LookupError):
    """Some sample ids have no image in the user's copies of the corpora (see `AttachReport`)."""


@dataclass
class AttachReport:
    """What `attach_images` restored, and which ids it could not find and why."""

    restored: int = 0
    missing: dict[str, list[Any]] = field(default_factory=dict)
    """source -> sample ids whose corpus was found but has no such sample."""
    missing_corpora: dict[str, int] = field(default_factory=dict)
    """source -> number of ids whose corpus folder is not under the root."""
    searched: dict[str, str] = field(default_factory=dict)
    """source -> folder searched."""

    @property
    def not_found(self) -> int:
        return sum(map(len, self.missing.values())) + sum(self.missing_corpora.values())

    def __str__(self) -> str:
        lines = [f"restored {self.restored} images, {self.not_found} not found"]
        for source, count in self.missing_corpora.items():
            lines.append(f"  {source}: {count} ids, corpus folder not found under the root")
        for source, ids in self.missing.items():
            examples = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
            lines.append(f"  {source}: {len(ids)} ids not in {self.searched.get(source, '?')} (e.g. {examples})")
        return "\n".join(lines)


def attach_images(
    ds: D,
    root: str | os.PathLike | None = None,
    *,
    paths: Mapping[str, str | os.PathLike] | None = None,
    configs: Mapping[str, str | None] | None = None,
    on_missing: Literal["drop", "keep", "raise"] = "drop",
    columns: Sequence[str] | None = None,
    cache_dir: str | None = None,
    return_report: bool = False,
) -> D | tuple[D, AttachReport]:
    """Put the images back from your licensed copies under `root` (or explicit per-corpus `paths`).

    Each source corpus is read through its own builder and config (`configs`, default `corpora.DEFAULT_CONFIGS`,
    which FEID/FEAB use), so restored rows are byte-identical to the originals. Ids that cannot be found are
    dropped (`on_missing="drop"`), kept with a null image (`"keep"`) or raise `ImagesNotFound` (`"raise"`); a report
    naming them is logged either way, and returned with `return_report=True`. `columns` says what to restore:
    by default `images` (a list with the face) for chat rows (a `messages` column), else `image`. Any other column
    of `ds` that stores files (an `Image`, `Audio`, ... column of a release: its cells could be paths to any file
    here, which a full release would embed) is dropped with a warning: images come only from your corpora.
    """
    if isinstance(ds, datasets.DatasetDict):
        outputs = {
            split: attach_images(
                d,
                root,
                paths=paths,
                configs=configs,
                on_missing=on_missing,
                columns=columns,
                cache_dir=cache_dir,
                return_report=True,
            )
            for split, d in ds.items()
        }
        result = datasets.DatasetDict({split: out[0] for split, out in outputs.items()})
        report = _merge_reports([out[1] for out in outputs.values()])
        return (result, report) if return_report else result
    if on_missing not in ("drop", "keep", "raise"):
        raise ValueError(f"on_missing must be 'drop', 'keep' or 'raise', not {on_missing!r}")
    if columns is None:
        columns = (CHAT_IMAGES_COLUMN,) if MESSAGES_COLUMN in ds.column_names else (IMAGE_COLUMN,)
    unknown = set(columns) - {IMAGE_COLUMN, CHAT_IMAGES_COLUMN}
    if unknown or not columns:
        raise ValueError(f"columns must be some of {IMAGE_COLUMN!r}, {CHAT_IMAGES_COLUMN!r}; got {columns!r}")
    present = [c for c in columns if c in ds.column_names]
    if present:
        raise ValueError(f"the dataset already has image column(s) {present}")
    foreign = file_columns(ds.features)
    if foreign:  # its cells could name any file on this machine, which a full release would then embed
        logger.warning("attach_images: dropped column(s) %s: images come only from your own copies of the corpora",
                       ", ".join(foreign))  # fmt: skip
        ds = ds.remove_columns(foreign)
    ids, sources = column_values(ds, "sample_id"), column_values(ds, "source")
    dirs = find_corpus_dirs(root, paths)
    report = AttachReport()
    located: list[tuple[str, str, int] | None] = [None] * len(ids)
    wanted: dict[str, list[int]] = defaultdict(list)
    for row, source in enumerate(sources):
        wanted[source].append(row)
    corpora: dict[str, datasets.DatasetDict] = {}
    for source, rows in wanted.items():
        if source not in dirs:
            report.missing_corpora[source] = len(rows)
            continue
        config = (configs or {}).get(source)
        corpora[source] = load_source(source, dirs[source], config=config, cache_dir=cache_dir)
        report.searched[source] = str(dirs[source])
        position = {
            sample_id: (split, index)
            for split, corpus in corpora[source].items()
            for index, sample_id in enumerate(column_values(corpus, "sample_id"))
        }
        for row in rows:
            hit = position.get(ids[row])
            if hit is None:
                report.missing.setdefault(source, []).append(ids[row])
            else:
                located[row] = (source, *hit)
    report.restored = sum(hit is not None for hit in located)
    if report.not_found:
        if on_missing == "raise":
            raise ImagesNotFound(str(report))
        logger.warning("attach_images: %s", report)
    if on_missing == "drop" and report.not_found:
        keep = [row for row, hit in enumerate(located) if hit is not None]
        ds, located = ds.select(keep), [located[row] for row in keep]
    images = _gather_images(corpora, located)
    result = _add_image_columns(ds, images, columns)
    return (result, report) if return_report else result


def _gather_images(corpora: Mapping[str, datasets.DatasetDict], located: list[tuple[str, str, int] | None]) -> pa.Array:
    """The image structs of `located` rows, in order, null where a row was not found (one `take` per split)."""
    by_split: dict[tuple[str, str], list[int]] = defaultdict(list)
    for hit in located:
        if hit is not None:
            by_split[hit[:2]].append(hit[2])
    chunks, offset, start = [], 0, {}
    for (source, split), indices in by_split.items():
        table = corpora[source][split].select_columns([IMAGE_COLUMN]).with_format("arrow")[indices]
        chunks.append(table[IMAGE_COLUMN].combine_chunks())
        start[source, split] = (offset, {index: i for i, index in enumerate(indices)})
        offset += len(indices)
    image_type = datasets.Features({IMAGE_COLUMN: datasets.Image()}).arrow_schema.field(IMAGE_COLUMN).type
    values = pa.concat_arrays([c.cast(image_type) for c in chunks]) if chunks else pa.array([], image_type)
    order = []
    for hit in located:
        if hit is None:
            order.append(None)
        else:
            base, index_of = start[hit[:2]]
            order.append(base + index_of[hit[2]])
    return values.take(pa.array(order, pa.int64()))


def _add_image_columns(ds: datasets.Dataset, images: pa.Array, columns: Sequence[str]) -> datasets.Dataset:
    """Add `image` where the unified schema has it (after `subject`) and/or `images` ([image]) after `messages`."""
    arrays: dict[str, pa.Array] = {}
    features: dict[str, Any] = {}
    order = list(ds.column_names)
    if IMAGE_COLUMN in columns:
        arrays[IMAGE_COLUMN], features[IMAGE_COLUMN] = images, datasets.Image()
        order.insert(order.index("subject") + 1 if "subject" in order else 1, IMAGE_COLUMN)
    if CHAT_IMAGES_COLUMN in columns:
        offsets = pa.array(range(len(images) + 1), pa.int32())
        arrays[CHAT_IMAGES_COLUMN] = pa.ListArray.from_arrays(offsets, images, mask=pc.is_null(images))
        features[CHAT_IMAGES_COLUMN] = datasets.List(datasets.Image())
        order.insert(order.index(MESSAGES_COLUMN) + 1 if MESSAGES_COLUMN in order else len(order), CHAT_IMAGES_COLUMN)
    if len(ds) == 0:  # concatenate_datasets would drop the new columns of an empty dataset
        features = {**ds.features, **features}
        return datasets.Dataset.from_dict({c: [] for c in order}, datasets.Features({c: features[c] for c in order}))
    added = dataset_from_arrays(arrays, datasets.Features(features))
    return datasets.concatenate_datasets([ds, added], axis=1).select_columns(order)


def _merge_reports(reports: list[AttachReport]) -> AttachReport:
    merged = AttachReport()
    for report in reports:
        merged.restored += report.restored
        for source, ids in report.missing.items():
            merged.missing.setdefault(source, []).extend(ids)
        for source, count in report.missing_corpora.items():
            merged.missing_corpora[source] = merged.missing_corpora.get(source, 0) + count
        merged.searched.update(report.searched)
    return merged
