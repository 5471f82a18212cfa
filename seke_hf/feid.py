"""FEID and FEAB from the corpora under one ROOT: labels -> manifest (`seke_hf.selection`) -> images of its rows.

The manifest (sample_id, split, source) is what makes a build reproducible: the same manifest and the same corpora
give the same datasets on any machine. It is computed by the shipped protocol and parameters from each corpus's
label pass (`seke_hf.corpus_labels`: no image read), or read from a file a user passes. Only then are images read,
for the manifest's rows alone, into one Arrow file of the selected rows (cached: the same inputs build nothing
twice). A chosen row whose image turns out missing or unreadable is left out, named in the report, and the selection
is run again without it, so the manifest is the one a whole-corpus conversion (which never sees such rows) gives.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import datasets

from seke_hf import corpus_labels
from seke_hf.corpora import CORPORA
from seke_hf.corpus_labels import CorpusLabels, ImageSkips, read_labels, read_rows
from seke_hf.corpus_roots import find_corpus_dirs, warn_missing
from seke_hf.selected_rows import SelectedRows
from seke_hf.selection import FEAB_SPLIT, FEID_SPLIT, Manifest, ManifestEntry, SelectionParams, select, sort_manifest

logger = logging.getLogger("seke_hf.feid")

CKPLUS_SPLIT_FILE = "ckplus_feid_split.csv"
"""SEKE's CK+ split as released (docs/paper.md): split,expression,sequence per labelled CK+ sequence."""

MAX_SELECTION_ROUNDS = 10
"""Selections re-run without rows whose image proved unreadable; each round reads only newly chosen images."""

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
                raise ValueError(
                    f"manifest {path} line {line}: split {row['split']!r} is not {FEID_SPLIT!r} or {FEAB_SPLIT!r}"
                )
            manifest.append(ManifestEntry(row["sample_id"], row["split"], row["source"]))
    return sort_manifest(manifest)


# -- corpora -> labels -> manifest -> rows ---------------------------------------------------------------------------


class CorpusError(ValueError):
    """A corpus folder was found but yields no row: a build must not silently go without it."""


@dataclass
class BuildReport:
    """What each stage of a FEID/FEAB build read, chose and left out: the build summary and `manifest_report.json`."""

    labels: dict[str, int] = field(default_factory=dict)
    """source -> rows of its label pass."""
    labels_from_cache: list[str] = field(default_factory=list)
    selected: dict[str, dict[str, int]] = field(default_factory=dict)
    """split -> source -> rows of the final manifest."""
    images_read: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    """reason -> sample ids chosen by a selection whose image was missing or unreadable (left out)."""
    not_in_copy: list[str] = field(default_factory=list)
    """Manifest ids (a user's manifest) that the corpora found do not hold."""
    selection_rounds: int = 0
    from_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FeidBuild(NamedTuple):
    datasets: datasets.DatasetDict
    """`train` (FEID) and `test` (FEAB), rows in manifest order."""
    manifest: Manifest
    report: BuildReport


Progress = Callable[[str], None]


def read_corpus_labels(
    root: str | os.PathLike | None,
    *,
    paths: Mapping[str, str | os.PathLike] | None = None,
    sources: Iterable[str] = CORPORA,
    configs: Mapping[str, str | None] | None = None,
    corpus_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    cache_dir: str | None = None,
    what: str = "FEID/FEAB",
) -> dict[str, CorpusLabels]:
    """The label pass of every wanted corpus found under `root` (or at its explicit path); a warning names the
    missing ones, and a corpus found that yields no row is an error naming its folder."""
    sources = tuple(sources)
    dirs = {s: d for s, d in find_corpus_dirs(root, paths).items() if s in sources}
    warn_missing(dirs, sources, what)
    if not dirs:
        raise FileNotFoundError(f"no corpus folder found under {root}; expected some of "
                                f"CK+, RAF-DB, AffectNet, DISFA, BP4D, Aff-Wild2 (matched ignoring case)")  # fmt: skip
    found = {}
    for source, directory in dirs.items():
        labels = read_labels(
            source,
            directory,
            config=(configs or {}).get(source),
            cache_dir=cache_dir,
            **(corpus_kwargs or {}).get(source, {}),
        )
        if not labels.table.num_rows:
            raise CorpusError(
                f"{source}: the folder {directory} yields no row (every label line or image was skipped; the "
                f"warnings above say why). Fix the copy, or leave {source} out (--corpora / sources=)."
            )
        found[source] = labels
    return found


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
    limit: int | None = None,
    progress: Progress | None = None,
) -> FeidBuild:
    """FEID (`train`) and FEAB (`test`) from the corpora under `root`, the manifest they hold, and the build report.

    Labels first (cached per corpus), then the selection (or `manifest`), then the images of the chosen rows only.
    `limit` keeps that many rows per dataset, taken in turn from each source (dry runs), before any image is read.
    """
    say = progress or logger.info
    sources = tuple(sources)
    params = params or SelectionParams()
    labels = read_corpus_labels(
        root, paths=paths, sources=sources, configs=configs, corpus_kwargs=corpus_kwargs, cache_dir=cache_dir
    )
    report = BuildReport(
        labels={s: c.table.num_rows for s, c in labels.items()},
        labels_from_cache=[s for s, c in labels.items() if c.from_cache],
    )
    cached = "" if not report.labels_from_cache else f"; {len(report.labels_from_cache)} from cache"
    say(f"labels read: {sum(report.labels.values())} rows of {len(labels)} corpora ("
        + ", ".join(f"{s} {n}" for s, n in report.labels.items()) + f"{cached})")  # fmt: skip
    given = None
    if manifest is not None:
        given = manifest if isinstance(manifest, list) else read_manifest(manifest)
        given = [entry for entry in given if entry.source in sources]
    inputs = {
        "labels": {s: c.key for s, c in labels.items()},
        "manifest": [list(e) for e in given] if given is not None else None,
        "params": params.to_dict() if given is None else None,
        "limit": limit,
    }
    store = SelectedRows.for_inputs(inputs, cache_dir)
    if store.done():
        entries, stored = store.load()
        report = dataclasses.replace(
            BuildReport(**stored), labels=report.labels, labels_from_cache=report.labels_from_cache, from_cache=True
        )
    else:
        entries = _select_and_read(labels, given, params, limit, store, report)
    splits = datasets.DatasetDict({split: store.rows(entries, split) for split in (FEID_SPLIT, FEAB_SPLIT)})
    say(f"rows selected: FEID {len(splits[FEID_SPLIT])}, FEAB {len(splits[FEAB_SPLIT])}"
        + (f" ({report.selection_rounds} selection rounds)" if report.selection_rounds > 1 else ""))  # fmt: skip
    skipped = sum(map(len, report.skipped.values()))
    say(f"images read: {report.images_read}" + (" (from cache)" if report.from_cache else "")
        + (f"; {skipped} chosen rows left out: " + "; ".join(f"{len(ids)} {reason} (e.g. {ids[0]})"
           for reason, ids in report.skipped.items()) if skipped else ""))  # fmt: skip
    return FeidBuild(splits, entries, report)


def _select_and_read(
    labels: Mapping[str, CorpusLabels],
    given: Manifest | None,
    params: SelectionParams,
    limit: int | None,
    store: SelectedRows,
    report: BuildReport,
) -> Manifest:
    """Select (or take `given`), read the chosen rows' images, and select again without any that failed."""
    skipped = ImageSkips()
    with store:
        for _ in range(MAX_SELECTION_ROUNDS):
            report.selection_rounds += 1
            left_out = skipped.ids()
            entries = given if given is not None else select_manifest(labels, params, left_out)
            entries = [e for e in entries if e.sample_id not in left_out]
            if limit is not None:
                entries = limit_manifest(entries, limit)
            failures = skipped.total()
            for source, ids in _by_source(e for e in entries if e.sample_id not in store.index).items():
                if source in labels:
                    for sample_id, row in read_rows(labels[source], ids, skipped):
                        store.add(sample_id, row)
            if given is not None or skipped.total() == failures:
                break
    report.images_read = len(store.index)
    report.skipped = skipped.by_reason
    known = {s: c.positions() for s, c in labels.items()}
    report.not_in_copy = [e.sample_id for e in entries if e.sample_id not in known.get(e.source, {})]
    if report.not_in_copy:
        logger.warning("%d samples of the manifest are not in this copy (e.g. %s)", len(report.not_in_copy),
                       ", ".join(report.not_in_copy[:3]))  # fmt: skip
    entries = [e for e in entries if e.sample_id in store.index]
    report.selected = manifest_counts(entries)
    store.finish(entries, report.to_dict())
    return entries


def select_manifest(
    labels: Mapping[str, CorpusLabels], params: SelectionParams | None = None, leave_out: Iterable[str] = ()
) -> Manifest:
    """The shipped protocol applied to the corpora's label tables, without the `leave_out` ids."""
    leave_out = set(leave_out)
    tables = {source: corpus.selection_rows(leave_out) for source, corpus in labels.items()}
    return select(tables, params, ckplus_split=ckplus_split() if "ckplus" in tables else None)


def build_manifest(corpora: Mapping[str, datasets.DatasetDict], params: SelectionParams | None = None) -> Manifest:
    """The shipped protocol applied to corpora a user has loaded whole (`load_corpus`): the same manifest as `build`
    gives from their folders."""
    tables = {}
    for source, corpus in corpora.items():
        tables[source] = []
        for split, ds in corpus.items():
            columns = [c for c in corpus_labels.SELECTION_COLUMNS if c != "split"]
            for row in ds.select_columns(columns).to_list():
                tables[source].append({**row, "split": split})
    return select(tables, params, ckplus_split=ckplus_split() if "ckplus" in tables else None)


def limit_manifest(manifest: Manifest, limit: int) -> Manifest:
    """At most `limit` entries per split, taken in turn from each source, so a dry run sees every corpus."""
    kept = []
    for split in (FEID_SPLIT, FEAB_SPLIT):
        entries = [e for e in manifest if e.split == split]
        kept += [entries[i] for i in _spread([e.source for e in entries], limit)]
    return sort_manifest(kept)


def _spread(sources: list[str], limit: int) -> list[int]:
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_source.setdefault(source, []).append(i)
    queues = list(by_source.values())
    picked = [
        queue[depth] for depth in range(max(map(len, queues), default=0)) for queue in queues if depth < len(queue)
    ]
    return sorted(picked[:limit])


def _by_source(entries: Iterable[ManifestEntry]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for entry in entries:
        wanted.setdefault(entry.source, []).append(entry.sample_id)
    return wanted


def manifest_counts(manifest: Iterable[ManifestEntry]) -> dict[str, dict[str, int]]:
    """split -> source -> count, for summaries and cards."""
    counts: dict[str, dict[str, int]] = {FEID_SPLIT: {}, FEAB_SPLIT: {}}
    for entry in manifest:
        counts.setdefault(entry.split, {})
        counts[entry.split][entry.source] = counts[entry.split].get(entry.source, 0) + 1
    return counts
