"""The rows of one FEID/FEAB build with their images: one Arrow file, plus a JSON of its manifest and report.

Its name is a hash of every input of the build (each corpus's label key, the manifest or selection parameters, the
limit, and the code that selects), so the same build again reads no image, and FEID and FEAB share one file.
Rows are appended in the order their images are read (a video's frames in order); `rows` gives a split in manifest
order as an Arrow selection, so no image is copied.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter

from seke_hf.schema import FEATURES
from seke_hf.selection import Manifest, ManifestEntry

WRITE_BATCH_ROWS = 64
"""Selected rows per written record batch (a DISFA frame is ~100 kB)."""
CODE = ("seke_hf.selection", "seke_hf.corpus_labels", "seke_hf.feid", "seke_hf.selected_rows")
"""Modules whose code decides the rows: a change to any of them makes a new file."""


class SelectedRows:
    """One build's rows on disk: write with `with rows: rows.add(...); rows.finish(...)`, read with `rows(...)`."""

    def __init__(self, path: Path):
        self.path, self.meta = path, path.with_suffix(".json")
        self.index: dict[str, int] = {}
        self._writer: ArrowWriter | None = None
        self._batch: list[dict[str, Any]] = []
        self._dataset: datasets.Dataset | None = None

    @classmethod
    def for_inputs(cls, inputs: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> SelectedRows:
        """The file of a build with these `inputs` (JSON data), under `cache_dir` or the `datasets` cache."""
        code = "".join(inspect.getsource(importlib.import_module(name)) for name in CODE)
        key = json.dumps({**inputs, "code": hashlib.sha256(code.encode()).hexdigest()}, sort_keys=True)
        root = Path(cache_dir).expanduser() if cache_dir else Path(datasets.config.HF_DATASETS_CACHE)
        return cls(root / "seke_hf" / "selected" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.arrow")

    def done(self) -> bool:
        return self.path.is_file() and self.meta.is_file()

    def load(self) -> tuple[Manifest, dict[str, Any]]:
        """The manifest and report stored with a finished file."""
        meta = json.loads(self.meta.read_text())
        self.index = meta["index"]
        return [ManifestEntry(*e) for e in meta["manifest"]], meta["report"]

    def __enter__(self) -> SelectedRows:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        self._writer = ArrowWriter(features=FEATURES, path=str(self._partial))
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:  # an interrupted build leaves no file that looks finished
            self._writer.close()
            self._partial.unlink(missing_ok=True)

    def add(self, sample_id: str, row: dict[str, Any]) -> None:
        self.index[sample_id] = len(self.index)
        self._batch.append(row)
        if len(self._batch) == WRITE_BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=FEATURES.arrow_schema))
            self._batch = []

    def finish(self, manifest: Manifest, report: dict[str, Any]) -> None:
        """Close the file and store the manifest and report beside it (the file appears last, complete)."""
        self._flush()
        self._writer.finalize()
        self._writer.close()
        meta = {"index": self.index, "manifest": [list(e) for e in manifest], "report": report}
        self.meta.write_text(json.dumps(meta))
        os.replace(self._partial, self.path)

    def rows(self, manifest: Manifest, split: str) -> datasets.Dataset:
        """The rows of `split` in manifest order (an Arrow selection: no image is copied)."""
        if self._dataset is None:
            self._dataset = datasets.Dataset.from_file(str(self.path))
        indices = [self.index[e.sample_id] for e in manifest if e.split == split]
        if not indices:
            return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
        return self._dataset.select(indices)
