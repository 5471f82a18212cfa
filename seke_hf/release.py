"""Annotations-only releases: what may be published is ids and labels, never the licensed images.

The six corpora forbid redistributing their images, so FEID/FEAB are published without them
(`export_annotations`) and completed on the user's machine from the user's own licensed copies (`attach_images`).
`merge_annotations` brings an annotator run's labels, provenance and descriptions back onto rows by `sample_id`,
so nothing has to be annotated twice. All three work column-wise in Arrow: the image bytes are never decoded.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import InMemoryTable

from seke_hf.corpora import load_source
from seke_hf.corpus_roots import find_corpus_dirs

logger = logging.getLogger("seke_hf.release")

IMAGE_COLUMN = "image"
CHAT_IMAGES_COLUMN = "images"
MESSAGES_COLUMN = "messages"
IDENTITY_COLUMNS = ("sample_id", "source", "subject", "frame")
"""Who a row is: kept from the rows, never taken from an annotations file."""

ANNOTATIONS_LAYOUT = """\
  annotations: a Dataset/DatasetDict, a folder written by `save_to_disk`, a Parquet / JSON Lines / JSON / CSV file
  or a folder of Parquet files, or a Hub dataset id; one row per sample with a unique `sample_id` column plus the
  label columns to merge (expression, valence, arousal, aus, au_intensity, provenance, uncertainty, descriptions,
  status, ...), e.g. the output of `export_annotations`."""

D = TypeVar("D", datasets.Dataset, datasets.DatasetDict)


class ImagesNotFound(LookupError):
    """Some sample ids have no image in the user's copies of the corpora (see `AttachReport`)."""


@dataclass
class AttachReport:
    """What `attach_images` restored, and which ids it could not find and why."""

    restored: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)
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
            examples = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            lines.append(f"  {source}: {len(ids)} ids not in {self.searched.get(source, '?')} (e.g. {examples})")
        return "\n".join(lines)


def column_values(ds: datasets.Dataset, name: str) -> list[Any]:
    """One column as a Python list, read in one Arrow call (`ds[name]` in datasets 5 is a row-by-row view)."""
    return ds.select_columns([name]).with_format("arrow")[:][name].to_pylist()


# -- export ------------------------------------------------------------------------------------------------------


def image_columns(features: datasets.Features) -> list[str]:
    """Columns whose feature holds an image anywhere (Image, a list of Images, a struct with an Image)."""
    return [name for name, feature in features.items() if _holds_image(feature)]


def _holds_image(feature: Any) -> bool:
    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, dict):
        return any(_holds_image(f) for f in feature.values())
    if isinstance(feature, list | tuple):
        return any(_holds_image(f) for f in feature)
    inner = getattr(feature, "feature", None)
    return inner is not None and _holds_image(inner)


def export_annotations(ds: D) -> D:
    """The dataset without its images: sample ids, labels, provenance and chat text stay; pixels go."""
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({split: export_annotations(d) for split, d in ds.items()})
    if "sample_id" not in ds.column_names:
        raise ValueError("export_annotations needs a `sample_id` column: it is the key that brings images back")
    return ds.remove_columns(image_columns(ds.features))


# -- attach --------------------------------------------------------------------------------------------------------


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
    by default `images` (a list with the face) for chat rows (a `messages` column), else `image`.
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
    added = _dataset_from_arrays(arrays, datasets.Features(features))
    return datasets.concatenate_datasets([ds, added], axis=1).select_columns(order)


def _dataset_from_arrays(columns: Mapping[str, pa.Array], features: datasets.Features) -> datasets.Dataset:
    table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
    table = table.cast(features.arrow_schema)
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))


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


# -- merge ---------------------------------------------------------------------------------------------------------


def load_annotations(
    annotations: str | os.PathLike | datasets.Dataset | datasets.DatasetDict, config: str | None = None
) -> datasets.Dataset:
    """Any form of annotations (see ANNOTATIONS_LAYOUT) as one Dataset, all splits together, without images."""
    if isinstance(annotations, datasets.DatasetDict):
        annotations = datasets.concatenate_datasets(list(annotations.values()))
    if not isinstance(annotations, datasets.Dataset):
        annotations = _read_annotations(annotations, config)
    if "sample_id" not in annotations.column_names:
        raise ValueError(f"annotations have no `sample_id` column (columns: {annotations.column_names}).\n"
                         f"{ANNOTATIONS_LAYOUT}")  # fmt: skip
    return export_annotations(annotations)


def _read_annotations(spec: str | os.PathLike, config: str | None) -> datasets.Dataset:
    path = Path(spec).expanduser()
    formats = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}
    if path.is_file():
        builder = formats.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"annotations file {path} has an unknown extension.\n{ANNOTATIONS_LAYOUT}")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
        elif any(path.rglob("*.parquet")):
            loaded = datasets.load_dataset(str(path), config)
        else:
            raise FileNotFoundError(f"annotations folder {path} holds no save_to_disk dataset and no Parquet files.\n"
                                    f"{ANNOTATIONS_LAYOUT}")  # fmt: skip
    elif "/" in str(spec) and not str(spec).startswith((".", "/", "~")) and str(spec).count("/") == 1:
        loaded = datasets.load_dataset(str(spec), config)  # a Hub dataset id
    else:
        raise FileNotFoundError(f"annotations {spec} not found (no such file or folder, not a Hub id).\n"
                                f"{ANNOTATIONS_LAYOUT}")  # fmt: skip
    if isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.concatenate_datasets(list(loaded.values()))
    return loaded


def annotation_features(
    features: datasets.Features, annotations: datasets.Dataset | datasets.Features
) -> datasets.Features:
    """The features of `features` rows after merging `annotations` (its extra columns appended)."""
    extra = annotations if isinstance(annotations, datasets.Features) else annotations.features
    merged = dict(features)
    for name, feature in extra.items():
        if name not in IDENTITY_COLUMNS and name not in merged and not _holds_image(feature):
            merged[name] = feature
    return datasets.Features(merged)


def merge_annotations(
    ds: D,
    annotations: str | os.PathLike | datasets.Dataset | datasets.DatasetDict,
    *,
    config: str | None = None,
    on_unmatched: Literal["keep", "drop", "raise"] = "keep",
) -> D:
    """Take every label column of `annotations` onto the rows of `ds` with the same `sample_id`.

    Identity columns (source, subject, frame) and images stay those of `ds`. Rows without an annotation keep
    their own labels (`on_unmatched="keep"`; new columns are null there), are dropped (`"drop"`) or raise.
    """
    table = load_annotations(annotations, config)
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: merge_annotations(d, table, on_unmatched=on_unmatched) for split, d in ds.items()}
        )
    position = _unique_positions(column_values(table, "sample_id"))
    ids = column_values(ds, "sample_id")
    index = [position.get(sample_id) for sample_id in ids]
    unmatched = [sample_id for sample_id, i in zip(ids, index, strict=True) if i is None]
    if unmatched:
        message = f"{len(unmatched)} of {len(ids)} rows have no annotation (e.g. {', '.join(unmatched[:5])})"
        if on_unmatched == "raise":
            raise KeyError(message)
        logger.warning("merge_annotations: %s; %s", message, "dropped" if on_unmatched == "drop" else "kept as is")
        if on_unmatched == "drop":
            keep = [row for row, i in enumerate(index) if i is not None]
            ds, index = ds.select(keep), [index[row] for row in keep]
    columns = [c for c in table.column_names if c not in IDENTITY_COLUMNS]
    if not columns:
        return ds
    overlap = [c for c in columns if c in ds.column_names]
    table = _cast_like(table.select_columns(columns), ds.features, overlap)
    taken = table.with_format("arrow")[:].take(pa.array(index, pa.int64()))
    matched = pc.is_valid(pa.array(index, pa.int64()))
    own = ds.select_columns(overlap).with_format("arrow")[:] if overlap and unmatched else None
    arrays = {}
    for name in columns:
        column = taken[name].combine_chunks()
        if own is not None and name in overlap:
            column = pc.if_else(matched, column, own[name].combine_chunks())
        arrays[name] = column
    merged = _dataset_from_arrays(arrays, datasets.Features({c: table.features[c] for c in columns}))
    order = list(ds.column_names) + [c for c in columns if c not in ds.column_names]
    rest = ds.remove_columns(overlap) if overlap else ds
    return datasets.concatenate_datasets([rest, merged], axis=1).select_columns(order)


def _unique_positions(ids: list[str]) -> dict[str, int]:
    position: dict[str, int] = {}
    duplicates = []
    for i, sample_id in enumerate(ids):
        if sample_id in position:
            duplicates.append(sample_id)
        position[sample_id] = i
    if duplicates:
        raise ValueError(f"annotations repeat {len(duplicates)} sample ids (e.g. {', '.join(duplicates[:5])}); "
                         "each sample needs exactly one row")  # fmt: skip
    return position


def _cast_like(table: datasets.Dataset, features: datasets.Features, columns: list[str]) -> datasets.Dataset:
    """Cast overlapping columns to the rows' features (names -> ClassLabel ids, struct fields by name)."""
    for name in columns:
        target, current = features[name], table.features[name]
        if target == current:
            continue
        if isinstance(target, datasets.ClassLabel) and getattr(current, "dtype", None) == "string":
            table = table.map(
                lambda batch, n=name, t=target: {n: [t.str2int(v) if v else -1 for v in batch[n]]},
                batched=True,
                features=datasets.Features({**table.features, name: target}),
            )
        else:
            table = table.cast_column(name, target)
    return table
