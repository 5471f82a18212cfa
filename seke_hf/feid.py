"""FEID and FEAB from the corpora under one ROOT: metadata -> manifest (`seke_hf.selection`) -> rows.

The manifest (sample_id, split, source) is what makes a build reproducible: the same manifest and the same corpora
give the same datasets on any machine. It is computed from the corpora by the shipped protocol and parameters, or
read from a file a user passes. Rows are the unified schema, taken from the corpus builders' cached datasets
without copying pixels (Arrow selections).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import datasets

from seke_hf.corpora import CORPORA
from seke_hf.release import column_values
from seke_hf.schema import FEATURES
from seke_hf.selection import FEAB_SPLIT, FEID_SPLIT, Manifest, ManifestEntry, SelectionParams, select, sort_manifest
from seke_hf.sources import find_corpus_dirs, load_source, warn_missing

logger = logging.getLogger("seke_hf.feid")

CKPLUS_SPLIT_FILE = "ckplus_feid_split.csv"
"""SEKE's CK+ split as released (paper.md): split,expression,sequence per labelled CK+ sequence."""

METADATA_COLUMNS = ("sample_id", "subject", "frame", "expression", "valence", "arousal", "aus")
"""What the selection protocol reads from a corpus (never the images)."""

MANIFEST_COLUMNS = ManifestEntry._fields


# -- manifests -------------------------------------------------------------------------------------------------------


def ckplus_split() -> dict[str, str]:
    """`S022_005` -> `test`: the shipped CK+ split, read from the package."""
    text = resources.files("seke_hf.loading_scripts").joinpath(CKPLUS_SPLIT_FILE).read_text(encoding="utf-8")
    return {row["sequence"]: row["split"] for row in csv.DictReader(io.StringIO(text))}


def ckplus_split_digest() -> str:
    data = resources.files("seke_hf.loading_scripts").joinpath(CKPLUS_SPLIT_FILE).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def write_manifest(manifest: Iterable[ManifestEntry], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(manifest)
    return path


def read_manifest(path: str | os.PathLike) -> Manifest:
    """A manifest CSV (`sample_id,split,source`, split `train` = FEID or `test` = FEAB); clear errors otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; expected a CSV with header {','.join(MANIFEST_COLUMNS)}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"manifest {path} lacks columns {sorted(missing)}; header must be "
                             f"{','.join(MANIFEST_COLUMNS)}")  # fmt: skip
        manifest = []
        for line, row in enumerate(reader, start=2):
            if row["split"] not in (FEID_SPLIT, FEAB_SPLIT):
                raise ValueError(f"manifest {path} line {line}: split {row['split']!r} is not {FEID!r} or {FEAB!r}")
            manifest.append(ManifestEntry(row["sample_id"], row["split"], row["source"]))
    return sort_manifest(manifest)


# -- corpora -> manifest -> rows ---------------------------------------------------------------------------------


def load_corpora(
    root: str | os.PathLike | None,
    *,
    paths: Mapping[str, str | os.PathLike] | None = None,
    sources: Iterable[str] = CORPORA,
    configs: Mapping[str, str | None] | None = None,
    corpus_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    cache_dir: str | None = None,
    what: str = "FEID/FEAB",
) -> dict[str, datasets.DatasetDict]:
    """Every wanted corpus found under `root` (or at its explicit path), loaded; a warning names the missing ones."""
    sources = tuple(sources)
    dirs = {s: d for s, d in find_corpus_dirs(root, paths).items() if s in sources}
    warn_missing(dirs, sources, what)
    if not dirs:
        raise FileNotFoundError(f"no corpus folder found under {root}; expected some of "
                                f"CK+, RAF-DB, AffectNet, DISFA, BP4D, Aff-Wild2 (matched ignoring case)")  # fmt: skip
    return {
        source: load_source(
            source,
            directory,
            config=(configs or {}).get(source),
            cache_dir=cache_dir,
            **(corpus_kwargs or {}).get(source, {}),
        )
        for source, directory in dirs.items()
    }


def metadata_rows(corpus: datasets.DatasetDict) -> list[dict[str, Any]]:
    """The rows the selection reads: label columns plus the corpus's split name, no images."""
    rows = []
    for split, ds in corpus.items():
        for row in ds.select_columns(list(METADATA_COLUMNS)).to_list():
            row["split"] = split
            rows.append(row)
    return rows


def build_manifest(corpora: Mapping[str, datasets.DatasetDict], params: SelectionParams | None = None) -> Manifest:
    """The shipped protocol applied to the loaded corpora."""
    tables = {source: metadata_rows(corpus) for source, corpus in corpora.items()}
    return select(tables, params, ckplus_split=ckplus_split() if "ckplus" in tables else None)


def assemble(
    corpora: Mapping[str, datasets.DatasetDict], manifest: Iterable[ManifestEntry], split: str
) -> datasets.Dataset:
    """The rows of `split` (`train` FEID / `test` FEAB) in manifest order; ids a copy lacks are reported."""
    wanted: dict[str, list[str]] = {}
    for entry in manifest:
        if entry.split == split:
            wanted.setdefault(entry.source, []).append(entry.sample_id)
    parts = []
    for source in sorted(wanted, key=lambda s: CORPORA.index(s) if s in CORPORA else len(CORPORA)):
        if source not in corpora:
            logger.warning("%s: the manifest lists %d %s samples but the corpus was not found", split,
                           len(wanted[source]), source)  # fmt: skip
            continue
        whole = datasets.concatenate_datasets(list(corpora[source].values()))
        position = {sample_id: i for i, sample_id in enumerate(column_values(whole, "sample_id"))}
        indices = [position[i] for i in wanted[source] if i in position]
        absent = [i for i in wanted[source] if i not in position]
        if absent:
            logger.warning("%s: %d of %d %s samples of the manifest are not in this copy (e.g. %s)", split,
                           len(absent), len(wanted[source]), source, ", ".join(absent[:3]))  # fmt: skip
        parts.append(whole.select(indices))
    if not parts:
        return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
    return datasets.concatenate_datasets(parts)


def build(
    root: str | os.PathLike | None,
    *,
    paths: Mapping[str, str | os.PathLike] | None = None,
    sources: Iterable[str] = CORPORA,
    manifest: str | os.PathLike | Manifest | None = None,
    params: SelectionParams | None = None,
    configs: Mapping[str, str | None] | None = None,
    corpus_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, Manifest]:
    """FEID (`train`) and FEAB (`test`) from the corpora under `root`, and the manifest they were built from."""
    sources = tuple(sources)
    corpora = load_corpora(
        root, paths=paths, sources=sources, configs=configs, corpus_kwargs=corpus_kwargs, cache_dir=cache_dir
    )
    if manifest is None:
        manifest = build_manifest(corpora, params)
    elif not isinstance(manifest, list):
        manifest = read_manifest(manifest)
    manifest = [entry for entry in manifest if entry.source in sources]
    splits = datasets.DatasetDict({split: assemble(corpora, manifest, split) for split in (FEID_SPLIT, FEAB_SPLIT)})
    return splits, manifest


def manifest_counts(manifest: Iterable[ManifestEntry]) -> dict[str, dict[str, int]]:
    """split -> source -> count, for summaries and cards."""
    counts: dict[str, dict[str, int]] = {FEID_SPLIT: {}, FEAB_SPLIT: {}}
    for entry in manifest:
        counts.setdefault(entry.split, {})
        counts[entry.split][entry.source] = counts[entry.split].get(entry.source, 0) + 1
    return counts
