"""The corpora under one ROOT folder: find each by its usual folder name, and say which are not there.

FEID/FEAB, `attach_images` and `seke-hf build` start from a ROOT holding the user's licensed copies side by side
(`CK+`, `RAF-DB`, `AffectNet`, `DISFA`, `BP4D`, `Aff-Wild2`). Copies arrive with their names spelled in many ways,
so folder names are matched ignoring case, spaces, `-` and `_`; an explicit path per corpus overrides the search.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seke_hf.corpora import CORPORA
from seke_hf.loading_scripts.raw_files import local_path

logger = logging.getLogger("seke_hf.corpus_roots")

FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "ckplus": ("CK+", "CKPlus", "CK_Plus", "Cohn-Kanade+", "extended-cohn-kanade"),
    "rafdb": ("RAF-DB", "RAF", "RAF-DB-basic"),
    "affectnet": ("AffectNet",),
    "disfa": ("DISFA",),
    "bp4d": ("BP4D", "BP4D-Spontaneous"),
    "affwild2": ("Aff-Wild2", "AffWild2", "Aff-Wild-2"),
}
"""Source -> folder names it is usually unpacked under (compared by `_folder_key`)."""

def _folder_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


_KEY_TO_SOURCE = {_folder_key(name): source for source, names in FOLDER_NAMES.items() for name in names}


def find_corpus_dirs(
    root: str | os.PathLike | None, paths: Mapping[str, str | os.PathLike] | None = None
) -> dict[str, Path]:
    """Source -> folder of that corpus: the children of `root` with a usual name, then the explicit `paths`.

    Only what exists is returned; `missing_sources` says what is not there.
    """
    found: dict[str, Path] = {}
    if root is not None:
        root = local_path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"corpora root {root} is not a folder; expected it to hold {_usual_names()}")
        for child in sorted(root.iterdir()):
            source = _KEY_TO_SOURCE.get(_folder_key(child.name))
            if source and child.is_dir() and source not in found:
                found[source] = child
    for source, path in (paths or {}).items():
        if source not in CORPORA:
            raise ValueError(f"unknown corpus {source!r} in explicit paths; expected one of {', '.join(CORPORA)}")
        path = local_path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{source}: explicit path {path} is not a folder")
        found[source] = path
    return {source: found[source] for source in CORPORA if source in found}


def missing_sources(found: Mapping[str, Any], wanted: tuple[str, ...] = CORPORA) -> list[str]:
    return [source for source in wanted if source not in found]


def warn_missing(found: Mapping[str, Any], wanted: tuple[str, ...] = CORPORA, what: str = "FEID/FEAB") -> None:
    """One clear warning naming the corpora a ROOT lacks, by the folder names that would have been found."""
    missing = missing_sources(found, wanted)
    if missing:
        have = ", ".join(s for s in wanted if s in found) or "none"
        logger.warning(
            "%s is built from %d of %d corpora (%s); not found: %s (folder names are matched ignoring case, '-', '_')",
            what,
            len(wanted) - len(missing),
            len(wanted),
            have,
            ", ".join(FOLDER_NAMES[s][0] for s in missing),
        )


def _usual_names() -> str:
    return ", ".join(names[0] for names in FOLDER_NAMES.values())
