"""The FEID/FEAB selection protocol: pure functions from per-corpus metadata rows to a deterministic manifest.

SEKE publishes the totals (FEID 26,238 training samples, FEAB 3,035 test samples) and the exact CK+ part; the
other per-corpus counts and rules are not published (docs/paper.md). This module is our reading, every number a
parameter (`SelectionParams`):

- CK+: exactly the shipped split (`ckplus_feid_split.csv`), one peak frame per labelled sequence.
- RAF-DB, AffectNet: FEID from the official training split, FEAB from the official test/validation split, each
  class-balanced as far as the corpus allows (water-filling: rare classes give all they have).
- DISFA, BP4D: subject-independent (a seeded fraction of subjects is FEAB's, and never appears in FEID); frames
  cover AU combinations rare-first, round-robin, and are spaced in time so near-duplicate frames are not both taken.
- Aff-Wild2: FEID from training videos, FEAB from validation videos (a video in both is FEAB's only), preferring
  frames that carry more label levels, round-robin over videos, spaced in time.

No I/O here: a row is a mapping with `sample_id`, `subject`, `frame`, `split` (the corpus's own split name) and the
label columns of the unified schema. Everything is ordered by a seeded hash of the sample id, so the choice does
not depend on row order, and the manifest is the same on every machine.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from seke_hf.corpora import CORPORA
from seke_hf.schema import active_aus, annotated_levels, has_aus, has_expression

logger = logging.getLogger("seke_hf.selection")

FEID_SPLIT, FEAB_SPLIT = "train", "test"
"""The manifest's split of each dataset: FEID's rows are `train`, FEAB's (the test benchmark) `test`."""

PAPER_TOTALS = {FEID_SPLIT: 26_238, FEAB_SPLIT: 3_035}
"""SEKE's published sizes (arXiv 2505.18168, authors' README): the sum of the default targets at full corpus size."""

DEFAULT_TARGETS: dict[str, tuple[int, int]] = {
    "ckplus": (293, 34),  # informative only: CK+ is exactly the shipped split (293 + 34 = its 327 sequences)
    "rafdb": (6_000, 700),
    "affectnet": (8_000, 800),  # 1,000 / 100 per class over its 8 classes
    "disfa": (3_000, 450),
    "bp4d": (4_000, 550),
    "affwild2": (4_945, 501),
}
"""Source -> (FEID, FEAB) target counts: our split of the paper's totals, not published by the authors."""

DEFAULT_MIN_FRAME_GAP: dict[str, int] = {"disfa": 20, "bp4d": 25, "affwild2": 30}
"""Minimum distance in frames between two frames taken from one video: ~1 s at 20 fps (DISFA), 25 fps (BP4D),
30 fps (most Aff-Wild2 videos), so the same moment is never taken twice."""

TEST_SPLIT_NAMES = ("test", "validation", "val", "valid")
"""Corpus split names that feed FEAB (RAF-DB test, AffectNet and Aff-Wild2 validation); `train` feeds FEID."""


class ManifestEntry(NamedTuple):
    sample_id: str
    split: str
    source: str


Manifest = list[ManifestEntry]


@dataclass
class SelectionParams:
    """Every knob of the protocol. The defaults reproduce the shipped manifest at full corpus size."""

    seed: int = 0
    targets: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    min_frame_gap: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_FRAME_GAP))
    feab_subject_fraction: float = 0.2
    """DISFA/BP4D: share of subjects held out for FEAB (CK+'s release held out 1/10; FEAB needs AU variety)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SelectionParams:
        """Defaults updated by `data` (per-source dicts are merged, so `{"targets": {"rafdb": [10, 5]}}` works)."""
        params = cls()
        for key, value in (data or {}).items():
            if not hasattr(params, key):
                raise ValueError(f"unknown selection parameter {key!r}; expected one of {list(asdict(params))}")
            if isinstance(getattr(params, key), dict):
                value = {**getattr(params, key), **{k: tuple(v) if key == "targets" else v for k, v in value.items()}}
            setattr(params, key, value)
        return params

    def target(self, source: str, split: str) -> int:
        feid, feab = self.targets.get(source, (0, 0))
        return feid if split == FEID_SPLIT else feab


# -- the protocol --------------------------------------------------------------------------------------------------


def select(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    params: SelectionParams | None = None,
    ckplus_split: Mapping[str, str] | None = None,
) -> Manifest:
    """Source -> metadata rows  ==>  the manifest of FEID (`train`) and FEAB (`test`), sorted by split/source/id."""
    params = params or SelectionParams()
    manifest: Manifest = []
    for source, rows in tables.items():
        if source == "ckplus":
            if ckplus_split is None:
                raise ValueError("ckplus selection needs the shipped split table (sequence -> split)")
            picked = select_ckplus(rows, ckplus_split)
        elif source in ("rafdb", "affectnet"):
            picked = select_class_balanced(rows, params.targets.get(source, (0, 0)), params.seed)
        elif source in ("disfa", "bp4d"):
            picked = select_au_frames(
                rows,
                params.targets.get(source, (0, 0)),
                params.seed,
                params.min_frame_gap.get(source, 0),
                params.feab_subject_fraction,
            )
        elif source == "affwild2":
            picked = select_multilevel_frames(
                rows, params.targets.get(source, (0, 0)), params.seed, params.min_frame_gap.get(source, 0)
            )
        else:
            raise ValueError(f"no selection rule for source {source!r}")
        manifest += [ManifestEntry(sample_id, split, source) for split, ids in picked.items() for sample_id in ids]
    return sort_manifest(manifest)


def sort_manifest(manifest: Iterable[ManifestEntry]) -> Manifest:
    return sorted(manifest, key=lambda e: (e.split != FEID_SPLIT, _source_order(e.source), e.sample_id))


def select_ckplus(rows: Sequence[Mapping[str, Any]], split_of_sequence: Mapping[str, str]) -> dict[str, list[str]]:
    """Exactly the shipped split: the last (peak) frame of each listed sequence, in the split the list gives."""
    peak: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        sequence = ckplus_sequence(row["sample_id"])
        if sequence in split_of_sequence and (
            sequence not in peak or (row.get("frame") or 0) > (peak[sequence].get("frame") or 0)
        ):
            peak[sequence] = row
    picked: dict[str, list[str]] = {FEID_SPLIT: [], FEAB_SPLIT: []}
    for sequence, row in sorted(peak.items()):
        picked[FEAB_SPLIT if split_of_sequence[sequence] == "test" else FEID_SPLIT].append(row["sample_id"])
    absent = len(split_of_sequence) - len(peak)
    if absent:
        # The CK+ builder already warns about its own copy; this is the selection's view of the same fact.
        logger.info("ckplus: %d of the %d sequences of the shipped split are not in this copy", absent,
                    len(split_of_sequence))  # fmt: skip
    return picked


def ckplus_sequence(sample_id: str) -> str:
    """`ckplus/S005/001/S005_001_00000011` -> `S005_001` (the key of ckplus_feid_split.csv)."""
    parts = sample_id.split("/")
    return f"{parts[1]}_{parts[2]}" if len(parts) >= 3 else ""


def select_class_balanced(
    rows: Sequence[Mapping[str, Any]], targets: tuple[int, int], seed: int
) -> dict[str, list[str]]:
    """RAF-DB/AffectNet: per official split, an equal share per expression class, water-filled."""
    picked = {}
    for split, pool in _official_pools(rows).items():
        by_class: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for row in pool:
            if has_expression(row):
                by_class[row["expression"]].append(row)
        quotas = water_fill({c: len(members) for c, members in by_class.items()}, targets[split == FEAB_SPLIT])
        picked[split] = [
            row["sample_id"]
            for c in sorted(by_class)
            for row in sorted(by_class[c], key=lambda r: rank(seed, r["sample_id"]))[: quotas[c]]
        ]
    return picked


def select_au_frames(
    rows: Sequence[Mapping[str, Any]],
    targets: tuple[int, int],
    seed: int,
    min_gap: int,
    feab_subject_fraction: float,
) -> dict[str, list[str]]:
    """DISFA/BP4D: FEAB subjects never in FEID; frames cover AU combinations rare-first, spaced in time."""
    subjects = sorted({row["subject"] for row in rows})
    held_out = set(feab_subjects(subjects, feab_subject_fraction, seed))
    pools: dict[str, list[Mapping[str, Any]]] = {FEID_SPLIT: [], FEAB_SPLIT: []}
    for row in rows:
        pools[FEAB_SPLIT if row["subject"] in held_out else FEID_SPLIT].append(row)
    return {
        split: cover_au_combinations(pool, targets[split == FEAB_SPLIT], seed, min_gap) for split, pool in pools.items()
    }


def feab_subjects(subjects: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A seeded `fraction` of the subjects (at least one, and never all of them), sorted."""
    if len(subjects) < 2:
        if subjects:
            logger.warning("only one subject (%s): it goes to FEID and FEAB gets none of its frames", subjects[0])
        return []
    count = min(len(subjects) - 1, max(1, round(len(subjects) * fraction)))
    return sorted(sorted(subjects, key=lambda s: rank(seed, f"subject:{s}"))[:count])


def cover_au_combinations(rows: Sequence[Mapping[str, Any]], target: int, seed: int, min_gap: int) -> list[str]:
    """Round-robin over AU combinations, rarest first: every combination gets a frame before any gets two."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if has_aus(row):
            groups[tuple(active_aus(row["aus"]))].append(row)
    for members in groups.values():
        members.sort(key=lambda r: rank(seed, r["sample_id"]))
    order = sorted(groups, key=lambda combination: (len(groups[combination]), combination))
    return _round_robin([groups[c] for c in order], target, Spacing(min_gap))


def select_multilevel_frames(
    rows: Sequence[Mapping[str, Any]], targets: tuple[int, int], seed: int, min_gap: int
) -> dict[str, list[str]]:
    """Aff-Wild2: training videos -> FEID, validation videos -> FEAB; frames with more label levels first."""
    pools = _official_pools(rows)
    feab_scenes = {video_scene(row["subject"]) for row in pools.get(FEAB_SPLIT, [])}
    shared = {video_scene(row["subject"]) for row in pools.get(FEID_SPLIT, [])} & feab_scenes
    if shared:
        logger.info("affwild2: %d videos are in both splits; FEAB keeps them, FEID leaves them out", len(shared))
        pools[FEID_SPLIT] = [row for row in pools[FEID_SPLIT] if video_scene(row["subject"]) not in feab_scenes]
    picked = {}
    for split, pool in pools.items():
        spacing, chosen = Spacing(min_gap), []
        for levels in (3, 2, 1):
            by_video: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
            for row in pool:
                if len(annotated_levels(row)) == levels:
                    by_video[row["subject"]].append(row)
            videos = sorted(by_video, key=lambda v: rank(seed, f"video:{v}"))
            queues = [sorted(by_video[v], key=lambda r: rank(seed, r["sample_id"])) for v in videos]
            chosen += _round_robin(queues, targets[split == FEAB_SPLIT] - len(chosen), spacing)
        picked[split] = chosen
    return picked


def video_scene(video: str) -> str:
    """Aff-Wild2 `<video>_left` / `<video>_right` are two people in one scene: they share a split."""
    return re.sub(r"_(left|right)$", "", video)


# -- building blocks ------------------------------------------------------------------------------------------------


def rank(seed: int, key: str) -> bytes:
    """A seeded, platform-independent sort key (Python's hash() changes between processes)."""
    return hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()


def water_fill(available: Mapping[Any, int], target: int) -> dict[Any, int]:
    """Equal quotas up to `target` in total; a class with fewer gives all it has and the rest is shared out."""
    quotas = dict.fromkeys(available, 0)
    remaining, open_classes = max(0, target), sorted(c for c, n in available.items() if n > 0)
    while remaining > 0 and open_classes:
        share, extra = divmod(remaining, len(open_classes))
        for i, c in enumerate(open_classes):
            give = min(available[c] - quotas[c], share + (i < extra))
            quotas[c] += give
            remaining -= give
        open_classes = [c for c in open_classes if quotas[c] < available[c]]
    return quotas


class Spacing:
    """Frames already taken per video; a new frame must be at least `min_gap` frames from each of them."""

    def __init__(self, min_gap: int):
        self.min_gap = min_gap
        self.taken: dict[str, list[int]] = defaultdict(list)

    def fits(self, row: Mapping[str, Any]) -> bool:
        frame = row.get("frame")
        if frame is None or self.min_gap <= 0:
            return True
        frames = self.taken[sequence_of(row["sample_id"])]
        i = bisect.bisect_left(frames, frame)
        return all(abs(frames[j] - frame) >= self.min_gap for j in (i - 1, i) if 0 <= j < len(frames))

    def take(self, row: Mapping[str, Any]) -> None:
        if row.get("frame") is not None:
            bisect.insort(self.taken[sequence_of(row["sample_id"])], row["frame"])


def sequence_of(sample_id: str) -> str:
    """The video a frame id belongs to: `disfa/SN001/12` -> `disfa/SN001`, `bp4d/F001/T1/12` -> `bp4d/F001/T1`."""
    return sample_id.rsplit("/", 1)[0]


def _round_robin(queues: Sequence[Sequence[Mapping[str, Any]]], target: int, spacing: Spacing) -> list[str]:
    """One spaced frame from each queue in turn until `target` frames are taken or every queue is exhausted."""
    chosen: list[str] = []
    cursors = [0] * len(queues)
    active = list(range(len(queues)))
    while active and len(chosen) < target:
        still = []
        for q in active:
            if len(chosen) >= target:
                break
            queue, i = queues[q], cursors[q]
            while i < len(queue) and not spacing.fits(queue[i]):
                i += 1
            if i < len(queue):
                spacing.take(queue[i])
                chosen.append(queue[i]["sample_id"])
                i += 1
            cursors[q] = i
            if i < len(queue):
                still.append(q)
        active = still
    return chosen


def _official_pools(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows by manifest split from the corpus's own split names (train -> FEID, test/validation -> FEAB)."""
    pools: dict[str, list[Mapping[str, Any]]] = {FEID_SPLIT: [], FEAB_SPLIT: []}
    for row in rows:
        split = str(row.get("split", "")).lower()
        if split == "train":
            pools[FEID_SPLIT].append(row)
        elif split in TEST_SPLIT_NAMES:
            pools[FEAB_SPLIT].append(row)
    return pools


def _source_order(source: str) -> tuple[int, str]:
    return (CORPORA.index(source) if source in CORPORA else len(CORPORA), source)
