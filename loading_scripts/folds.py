"""The de-facto subject-independent 3-fold protocol of the two action-unit corpora (DISFA, BP4D), as data.

Both corpora are split into three parts of subjects; fold k tests on one part and trains on the other two. The
lists are those of ME-GraphAU, JAA-Net, LibreFace and FG-Net (docs/corpora.md §4.5 and §5.5). Each builder declares
`fold_configs(...)` (configs `fold1`..`fold3` with `train`/`test`, plus `all` with one `train` split) and asks
`fold_subjects(...)` which of the subjects it found belong to each split.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from .corpus_builder import CorpusConfig

logger = logging.getLogger("seke_hf.loading")

Parts = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]

# docs/corpora.md §4.5, from ME-GraphAU tool/DISFA_image_label_process.py (same lists in JAA-Net, LibreFace, FG-Net).
DISFA_PARTS: Parts = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)

# docs/corpora.md §5.5, the split shared by ME-GraphAU and JAA-Net.
BP4D_PARTS: Parts = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)

FOLD_TEST_PART = {1: 2, 2: 1, 3: 0}
"""Fold -> index of the part it tests on: fold1 tests part3, fold2 part2, fold3 part1 (both corpora)."""


@dataclass
class FoldConfig(CorpusConfig):
    """A config of a fold-split corpus. `fold=None` is config `all`; `frame_stride` keeps frames f % stride == 0."""

    fold: int | None = None
    frame_stride: int = 1

    def check(self) -> None:
        """Options can be overridden after construction (`load_dataset(..., frame_stride=10)`), so check late."""
        if self.fold not in (None, *FOLD_TEST_PART):
            raise ValueError(f"fold must be 1, 2, 3 or None (all subjects), got {self.fold!r}")
        if not isinstance(self.frame_stride, int) or self.frame_stride < 1:
            raise ValueError(f"frame_stride must be an integer >= 1, got {self.frame_stride!r}")


ConfigT = TypeVar("ConfigT", bound=FoldConfig)


def fold_configs(config_class: type[ConfigT], corpus: str) -> list[ConfigT]:
    """Configs `fold1`..`fold3` (splits train/test) and `all` (every subject found, one train split)."""
    configs = [
        config_class(
            name=f"fold{fold}",
            fold=fold,
            description=f"{corpus} subject-independent fold {fold}: test on part {test + 1}, train on the others.",
        )
        for fold, test in FOLD_TEST_PART.items()
    ]
    configs.append(
        config_class(name="all", fold=None, description=f"every {corpus} subject found, as one train split.")
    )
    return configs


def fold_subjects(parts: Parts, fold: int | None, found: Iterable[str], corpus: str) -> dict[str, list[str]]:
    """Split name -> sorted subjects of `found` in it. Empty splits are left out (a partial copy) with a warning."""
    found = sorted(set(found))
    if fold is None:
        return {"train": found} if found else {}
    test_part = set(parts[FOLD_TEST_PART[fold]])
    listed = {subject for part in parts for subject in part}
    unlisted = [s for s in found if s not in listed]
    if unlisted:
        logger.warning("%s: subjects %s are in none of the 3-fold lists; only config 'all' has them", corpus, unlisted)
    splits = {
        "train": [s for s in found if s in listed and s not in test_part],
        "test": [s for s in found if s in test_part],
    }
    for split, subjects in splits.items():
        if not subjects:
            logger.warning("%s fold%d: no %s subject found in this copy; the split is left out", corpus, fold, split)
    return {split: subjects for split, subjects in splits.items() if subjects}


def keep_frame(frame: int, stride: int) -> bool:
    """`frame_stride` subsampling by frame number, so the same frames are kept whatever rows a copy lacks."""
    return frame % stride == 0
