"""A corpus's labels without its images, cached, and the images of chosen rows only.

FEID/FEAB select a few thousand rows out of corpora of up to millions of frames. Converting a whole corpus to find
them (images included) costs time and disk in proportion to the corpus; here the builder's label pass
(`CorpusBuilder.label_table`) reads only label files and folder listings, its result is cached beside the
`datasets` cache under a key that changes whenever the whole-corpus cache would (builder code, config, the label
files' and image folders' stat fingerprint), and `read_rows` then reads the images of the chosen rows alone, through
the same builder code a whole-corpus load uses, so the rows and their bytes are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from seke_hf.corpora import DEFAULT_CONFIGS
from seke_hf.loading_scripts.corpus_builder import CorpusBuilder, Skips

SELECTION_COLUMNS = ("sample_id", "split", "subject", "frame", "expression", "valence", "arousal", "aus")
"""What the selection protocol reads of a row (`seke_hf.selection`)."""
IMAGE_BATCH_ROWS = 256
"""Chosen rows whose images are read in one `read_images` call (one video opening per batch)."""


@dataclass
class CorpusLabels:
    """One corpus's label table (`label_table_schema`: labels, corpus split, image locator) and its builder."""

    source: str
    builder: CorpusBuilder
    table: pa.Table
    key: str
    """Changes whenever the builder code, its config or the raw files' fingerprint do."""
    from_cache: bool = False

    def selection_rows(self, leave_out: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The rows as the selection reads them, without `leave_out` ids (rows whose image proved unreadable)."""
        rows = self.table.select(list(SELECTION_COLUMNS)).to_pylist()
        leave_out = set(leave_out)
        return [row for row in rows if row["sample_id"] not in leave_out] if leave_out else rows

    def positions(self) -> dict[str, int]:
        return {sample_id: i for i, sample_id in enumerate(self.table.column("sample_id").to_pylist())}


@dataclass
class ImageSkips:
    """Chosen rows whose image was missing or unreadable: reason -> sample ids."""

    by_reason: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, sample_id: str) -> None:
        self.by_reason.setdefault(reason, []).append(sample_id)

    def ids(self) -> set[str]:
        return {sample_id for ids in self.by_reason.values() for sample_id in ids}

    def total(self) -> int:
        return sum(map(len, self.by_reason.values()))


def read_labels(
    source: str,
    data_dir: str | os.PathLike,
    *,
    config: str | None = None,
    cache_dir: str | None = None,
    **config_kwargs: Any,
) -> CorpusLabels:
    """The label table of corpus `source` at `data_dir` through config `config` (default `DEFAULT_CONFIGS`), from the
    cache when its key matches; no image is read and no whole-corpus Arrow cache is written."""
    config = config if config is not None else DEFAULT_CONFIGS.get(source)
    builder = datasets.load_dataset_builder(
        source, config, data_dir=os.fspath(data_dir), cache_dir=cache_dir, **config_kwargs
    )
    key = hashlib.sha256(builder.cache_dir.encode()).hexdigest()[:16]
    path = Path(builder._cache_dir_root) / "seke_hf" / "labels" / f"{source}-{key}.arrow"
    if path.is_file():
        with pa.memory_map(str(path)) as source_file:
            table = pa.ipc.open_file(source_file).read_all()
        return CorpusLabels(source, builder, table, key, from_cache=True)
    table = builder.label_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    options = pa.ipc.IpcWriteOptions(compression="zstd")  # label columns repeat a lot: ~10x smaller on disk
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    os.replace(partial, path)
    return CorpusLabels(source, builder, table, key)


def read_rows(
    labels: CorpusLabels, sample_ids: Iterable[str], skipped: ImageSkips
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(sample_id, full row with its image) for each id whose image could be read, in the corpus's own order (one
    pass per video); ids whose image is missing or unreadable go to `skipped` with the reason."""
    position = labels.positions()
    indices = sorted(position[sample_id] for sample_id in set(sample_ids) if sample_id in position)
    skips = Skips(labels.source, "selected rows")
    for start in range(0, len(indices), IMAGE_BATCH_ROWS):
        rows = labels.table.take(pa.array(indices[start : start + IMAGE_BATCH_ROWS], pa.int64())).to_pylist()
        images = labels.builder.read_images([json.loads(row.pop("locator")) for row in rows], skips)
        before = Counter(skips.counts)
        for row, image in zip(rows, images, strict=True):
            del row["split"]
            if image is None:
                reason = next(iter((skips.counts - before) or {"unreadable image": 1}))
                skipped.add(reason, row["sample_id"])
            else:
                row["image"] = image
                yield row["sample_id"], row
            before = Counter(skips.counts)
    skips.report()
