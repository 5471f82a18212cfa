"""The one schema every corpus is read into (a fixed contract: see docs/architecture.md).

One row per image or video frame. What a corpus does not annotate stays missing: expression -1, valence/arousal
null, an AU -1 ("not coded"). Nothing is ever invented to fill a gap; that is the annotator's job, and it records
that it did so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import datasets

EXPRESSIONS: list[str] = [
    "neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "contempt", "other",
]  # fmt: skip
AUS: list[str] = [
    "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26",
]  # fmt: skip

NOT_ANNOTATED = -1
"""Expression index, AU occurrence and AU intensity value meaning "not annotated"."""

LEVELS: tuple[str, ...] = ("expression", "valence_arousal", "aus")
"""The three label levels of SEKE: discrete expression, valence/arousal, action units."""

FEATURES = datasets.Features(
    {
        "sample_id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "subject": datasets.Value("string"),
        "image": datasets.Image(),
        "frame": datasets.Value("int32"),
        "expression": datasets.ClassLabel(names=EXPRESSIONS),
        "valence": datasets.Value("float32"),
        "arousal": datasets.Value("float32"),
        "aus": {au: datasets.Value("int8") for au in AUS},
        "au_intensity": {au: datasets.Value("int8") for au in AUS},
    }
)


def au_name(number: int | str) -> str:
    """`12`, `"12"`, `"au12"` or `"AU12"` -> `"AU12"` (not checked against AUS: see `is_known_au`)."""
    text = str(number).strip().upper().removeprefix("AU")
    return f"AU{int(text)}"


def is_known_au(name: str) -> bool:
    return name in _AU_SET


def not_coded_aus() -> dict[str, int]:
    return dict.fromkeys(AUS, NOT_ANNOTATED)


def empty_row(
    sample_id: str, source: str, *, subject: str = "", image: Any = None, frame: int | None = None
) -> dict[str, Any]:
    """A row with identity and image set and nothing annotated."""
    return {
        "sample_id": sample_id,
        "source": source,
        "subject": subject,
        "image": image,
        "frame": frame,
        "expression": NOT_ANNOTATED,
        "valence": None,
        "arousal": None,
        "aus": not_coded_aus(),
        "au_intensity": not_coded_aus(),
    }


def expression_index(name: str) -> int:
    """Canonical expression name -> ClassLabel index (raises ValueError for anything else)."""
    try:
        return EXPRESSIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown expression {name!r}; expected one of {EXPRESSIONS}") from None


def active_aus(aus: Mapping[str, int | None]) -> list[str]:
    """Struct form -> the AU names marked present (1), in AUS order."""
    return [au for au in AUS if aus.get(au) == 1]


def coded_aus(aus: Mapping[str, int | None]) -> list[str]:
    """Struct form -> the AU names that carry a label (0 or 1), in AUS order."""
    return [au for au in AUS if aus.get(au) in (0, 1)]


def aus_from_active(active: Iterable[str], coded: Iterable[str] | None = AUS) -> dict[str, int]:
    """Active AU names -> struct form: 1 if active, 0 if coded but inactive, -1 if not coded.

    `coded=None` means only the active AUs are known (everything else stays -1). Unknown AU names raise, so a
    typo never silently becomes "absent".
    """
    active_set = {au_name(a) for a in active}
    unknown = active_set - _AU_SET
    if unknown:
        raise ValueError(f"unknown AU name(s) {sorted(unknown)}; expected names from {AUS}")
    coded_set = set() if coded is None else {au_name(a) for a in coded}
    return {au: 1 if au in active_set else 0 if au in coded_set else NOT_ANNOTATED for au in AUS}


def has_expression(row: Mapping[str, Any]) -> bool:
    return row.get("expression", NOT_ANNOTATED) not in (None, NOT_ANNOTATED)


def has_valence_arousal(row: Mapping[str, Any]) -> bool:
    return row.get("valence") is not None and row.get("arousal") is not None


def has_aus(row: Mapping[str, Any]) -> bool:
    aus = row.get("aus") or {}
    return any(v in (0, 1) for v in aus.values())


def annotated_levels(row: Mapping[str, Any]) -> list[str]:
    """The LEVELS a row carries a label for."""
    present = {"expression": has_expression, "valence_arousal": has_valence_arousal, "aus": has_aus}
    return [level for level in LEVELS if present[level](row)]


_AU_SET = frozenset(AUS)
