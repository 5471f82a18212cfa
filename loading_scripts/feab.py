"""FEAB, SEKE's facial emotion analysis benchmark (test split): `load_dataset("feab", data_dir=ROOT)`.

The same corpora, manifest and options as FEID (`feid.py`); only the split differs. FEAB's subjects (DISFA, BP4D,
CK+) and videos (Aff-Wild2) never appear in FEID, and its RAF-DB/AffectNet samples come from the official test and
validation splits.
"""

from __future__ import annotations

from typing import ClassVar

from seke_hf.selection import FEAB_SPLIT

from .feid import DEPENDS_ON as FEID_DEPENDS_ON
from .feid import Feid

DEPENDS_ON = ("seke_hf.loading_scripts.feid", *FEID_DEPENDS_ON)


class Feab(Feid):
    NAME = "feab"
    SPLIT: ClassVar[str] = FEAB_SPLIT
    DESCRIPTION = (
        "FEAB: SEKE's facial emotion analysis benchmark (test split), selected from CK+, RAF-DB, AffectNet, DISFA, "
        "BP4D and Aff-Wild2 by seke_hf's protocol (our reading of arXiv 2505.18168); subject-independent of FEID."
    )
