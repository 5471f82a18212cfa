"""Emotion knowledge shared by prompts and verification: what each AU looks like, which AU combinations make up the
basic expressions, where each expression sits on the valence/arousal circumplex, and how consistent a (partial)
label set is across the three SEKE levels (expression, valence/arousal, AUs).

Sources:
- AU names and appearance: P. Ekman & W. V. Friesen, *Facial Action Coding System* (Consulting Psychologists Press,
  1978); P. Ekman, W. V. Friesen & J. C. Hager, *Facial Action Coding System: Manual and Investigator's Guide*
  (Research Nexus, 2002).
- Prototype AU combinations: EMFACS (W. V. Friesen & P. Ekman, *EMFACS-7: Emotional Facial Action Coding System*,
  unpublished manual, UCSF, 1983), as commonly tabulated in the AU literature (e.g. the emotion prediction table of
  the FACS Investigator's Guide, 2002), restricted to the 17 AUs of `seke_hf.schema.AUS`: AUs outside that set
  (AU11, AU16, AU22, AU27, laterality R/L and intensity letters) are dropped from the combinations.
- Valence/arousal anchors: J. A. Russell, "A circumplex model of affect", *Journal of Personality and Social
  Psychology* 39(6), 1980 (angles of "happy", "astonished", "afraid", "angry", "sad" on the circle), pulled towards
  the per-class valence/arousal means of AffectNet (A. Mollahosseini, B. Hasani & M. H. Mahoor, "AffectNet",
  *IEEE Trans. Affective Computing*, 2017), where observed faces are less extreme than the circle. Russell's circle
  has no "disgust" or "contempt": their anchors and the plausible ranges below are this project's choices, tolerant on
  purpose; they flag contradictions, not mild disagreement.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from seke_hf.schema import AUS, EXPRESSIONS, au_name, is_known_au


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: its number-name, FACS name and what a coder sees on the face."""

    name: str
    facs_name: str
    appearance: str


def _au(number: int, facs_name: str, appearance: str) -> ActionUnit:
    return ActionUnit(f"AU{number}", facs_name, appearance)


# FACS names and appearance changes after Ekman & Friesen (1978) and Ekman, Friesen & Hager (2002).
ACTION_UNITS: dict[str, ActionUnit] = {
    au.name: au
    for au in (
        _au(1, "Inner Brow Raiser", "inner corners of the eyebrows pulled up; wrinkles in the centre of the forehead"),
        _au(2, "Outer Brow Raiser", "outer parts of the eyebrows pulled up; arched brows, forehead sides wrinkled"),
        _au(4, "Brow Lowerer", "eyebrows lowered and drawn together; vertical furrows between the brows"),
        _au(5, "Upper Lid Raiser", "upper eyelid raised, widening the eye; white of the eye visible above the iris"),
        _au(6, "Cheek Raiser", "cheeks lifted, crow's-feet wrinkles at the outer eye corners, eyes narrowed"),
        _au(7, "Lid Tightener", "eyelids tightened and narrowed, lower lid raised and straightened"),
        _au(9, "Nose Wrinkler", "skin along the sides of the nose wrinkled, nostrils and upper lip pulled up"),
        _au(10, "Upper Lip Raiser", "upper lip raised, deepening the nasolabial furrow; upper teeth may show"),
        _au(12, "Lip Corner Puller", "lip corners pulled up and back obliquely, as in a smile"),
        _au(14, "Dimpler", "lip corners tightened and pulled inwards, forming dimples; often one-sided"),
        _au(15, "Lip Corner Depressor", "lip corners pulled down, mouth corners turned downwards"),
        _au(17, "Chin Raiser", "chin boss pushed up, lower lip pushed up and out, chin skin wrinkled"),
        _au(20, "Lip Stretcher", "lips stretched horizontally, lip corners pulled sideways, mouth elongated"),
        _au(23, "Lip Tightener", "lips tightened and narrowed, red of the lips less visible"),
        _au(24, "Lip Pressor", "lips pressed firmly together, bulging above and below the red"),
        _au(25, "Lips Part", "lips parted, teeth or the inside of the mouth visible"),
        _au(26, "Jaw Drop", "jaw lowered so the mouth hangs open, relaxed"),
    )
}  # fmt: skip


def _combos(*combos: tuple[int, ...]) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(f"AU{n}" for n in combo) for combo in combos)


# EMFACS-style prototypes (Friesen & Ekman 1983, as commonly tabulated), restricted to AUS. "other" has none.
PROTOTYPES: dict[str, tuple[frozenset[str], ...]] = {
    "neutral": (frozenset(),),
    "happiness": _combos((6, 12), (12,), (6, 12, 25)),
    "sadness": _combos((1, 4, 15), (1, 4, 15, 17), (6, 15), (1, 4), (1, 15)),
    "surprise": _combos((1, 2, 5, 26), (1, 2, 5, 25, 26), (1, 2, 26), (1, 2, 5), (5, 26)),
    "fear": _combos((1, 2, 4, 5, 7, 20, 26), (1, 2, 4, 5, 20, 25), (1, 2, 4, 5, 25), (1, 2, 4, 5), (5, 20, 25)),
    "anger": _combos((4, 5, 7, 23), (4, 5, 7, 24), (4, 5, 7, 17, 23), (4, 5, 7, 17, 24), (4, 5, 7, 10, 23, 25), (4, 7)),
    "disgust": _combos((9, 15), (9, 17), (9,), (10,), (10, 17), (10, 25), (9, 10, 25)),
    "contempt": _combos((12, 14), (14,)),
}

# Without at least one of these an expression matches none of its prototypes' defining movements (every EMFACS
# happiness prototype has AU12, every anger prototype AU4, ...). Checked only when one of them was coded.
SIGNATURE_AUS: dict[str, frozenset[str]] = {
    "happiness": frozenset({"AU12"}),
    "sadness": frozenset({"AU1", "AU4", "AU15"}),
    "surprise": frozenset({"AU1", "AU2", "AU5"}),
    "fear": frozenset({"AU1", "AU2", "AU4", "AU5", "AU20"}),
    "anger": frozenset({"AU4"}),
    "disgust": frozenset({"AU9", "AU10"}),
    "contempt": frozenset({"AU12", "AU14"}),
}

# (expression, AU that contradicts it, AUs any one of which explains it away). The smile AU12 in a negative
# expression without that expression's own defining movement is the classic mislabel.
CONTRADICTING_AUS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("anger", "AU12", frozenset({"AU4"})),
    ("sadness", "AU12", frozenset({"AU1", "AU4", "AU15"})),
    ("disgust", "AU12", frozenset({"AU9", "AU10"})),
    ("fear", "AU12", frozenset({"AU1", "AU2", "AU4", "AU5", "AU20"})),
    ("happiness", "AU15", frozenset({"AU12"})),
)

# Anchors (valence, arousal) after Russell (1980) and AffectNet per-class means (see the module docstring).
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happiness": (0.75, 0.35),
    "surprise": (0.2, 0.75),
    "fear": (-0.45, 0.75),
    "anger": (-0.55, 0.65),
    "disgust": (-0.65, 0.35),
    "sadness": (-0.7, -0.35),
    "contempt": (-0.5, 0.25),
}

# Plausible (low, high) valence and arousal per expression: wide boxes around the anchors. Outside them a label set
# contradicts itself; `None` means the level says nothing about that expression (e.g. the valence of surprise).
VALENCE_RANGE: dict[str, tuple[float, float] | None] = {
    "neutral": (-0.4, 0.4),
    "happiness": (0.0, 1.0),
    "surprise": None,
    "fear": (-1.0, 0.2),
    "anger": (-1.0, 0.1),
    "disgust": (-1.0, 0.1),
    "sadness": (-1.0, 0.1),
    "contempt": (-1.0, 0.2),
}
AROUSAL_RANGE: dict[str, tuple[float, float] | None] = {
    "neutral": (-0.6, 0.5),
    "happiness": (-0.6, 1.0),
    "surprise": (0.0, 1.0),
    "fear": (0.0, 1.0),
    "anger": (-0.1, 1.0),
    "disgust": (-0.5, 1.0),
    "sadness": (-1.0, 0.5),
    "contempt": (-0.6, 0.8),
}

RANGE_TOLERANCE = 0.5
"""How far (in valence or arousal units) outside a plausible range a value must be to score 0 on that check."""

MISSING_SIGNATURE_SCORE = 0.2
CONTRADICTING_AU_SCORE = 0.2
OUT_OF_SCALE_SCORE = 0.0
WEAK_AFFINITY = 0.5
"""Below this prototype affinity an AU pattern is noted as atypical; alone it lowers the score to no less than:"""
WEAK_AFFINITY_FLOOR = 0.6

# AU patterns whose valence is unambiguous even without an expression label.
SMILE = frozenset({"AU6", "AU12"})
SMILE_MIN_VALENCE = -0.3
SAD_FACE = frozenset({"AU1", "AU4", "AU15"})
SAD_FACE_MAX_VALENCE = 0.4


@dataclass(frozen=True)
class Consistency:
    """How well the levels of a label set agree: `score` 1 fully consistent .. 0 contradictory, and why."""

    score: float
    issues: tuple[str, ...] = ()

    def is_consistent(self, threshold: float = 0.5) -> bool:
        return self.score >= threshold


def consistency(
    expression: str | int | None = None,
    valence: float | None = None,
    arousal: float | None = None,
    aus: Mapping[str, int | None] | Iterable[str] | None = None,
) -> Consistency:
    """Score how well a (partial) label set hangs together; absent levels are simply not checked.

    `expression` is a name from EXPRESSIONS (or its ClassLabel index; -1/None = not annotated). `aus` is either the
    struct form (1 present, 0 absent, -1/None not coded) or an iterable of active AU names, which means all 17 AUs
    were coded. The score is the product of the per-check scores, so one contradiction is enough to fail.
    """
    expression = _expression_name(expression)
    valence = _value(valence)
    arousal = _value(arousal)
    active, coded = _active_and_coded(aus)
    checks: list[tuple[float, str | None]] = []
    for level, value in (("valence", valence), ("arousal", arousal)):
        if value is not None and not -1.0 <= value <= 1.0:
            checks.append((OUT_OF_SCALE_SCORE, f"{level} {value:.2f} outside [-1, 1]"))
    if expression is not None:
        ranges = (("valence", valence, VALENCE_RANGE), ("arousal", arousal, AROUSAL_RANGE))
        for level, value, table in ranges:
            if value is not None:
                checks.append(_range_check(expression, level, value, table.get(expression)))
        if coded:
            checks += _au_checks(expression, active, coded)
    if valence is not None and coded:
        checks += _au_valence_checks(valence, active)
    score = float(math.prod(s for s, _ in checks))
    return Consistency(score=round(score, 6), issues=tuple(issue for _, issue in checks if issue))


def expression_au_affinity(expression: str, active_aus: Iterable[str], coded: Iterable[str] | None = None) -> float:
    """How well the active AUs match the expression's best EMFACS prototype, in [0, 1].

    Per prototype: F1 of (share of the prototype shown) and (share of the active AUs that belong to any prototype of
    the expression). With `coded`, prototype AUs that were not coded are not held against the match. Neutral scores
    1 with no active AU and 1/(1+n) with n; an expression without prototypes ("other") scores 0.
    """
    name = _expression_name(expression)
    if name is None:
        raise ValueError("expression_au_affinity needs an expression")
    active = {_known_au(a) for a in active_aus}
    coded_set = set(AUS) if coded is None else {_known_au(a) for a in coded}
    if name == "neutral":
        return 1.0 / (1 + len(active))
    prototypes = PROTOTYPES.get(name, ())
    vocabulary = frozenset().union(*prototypes)
    precision = len(active & vocabulary) / len(active) if active else 0.0
    best = 0.0
    for prototype in prototypes:
        visible = prototype & coded_set
        if not visible:
            continue
        recall = len(visible & active) / len(visible)
        if recall + precision:
            best = max(best, 2 * recall * precision / (recall + precision))
    return best


def knowledge_prompt() -> str:
    """The knowledge block for system prompts: AU glossary, expression prototypes, circumplex anchors."""
    lines = ["Facial Action Coding System (FACS) action units:"]
    lines += [f"- {au.name} {au.facs_name}: {au.appearance}." for au in ACTION_UNITS.values()]
    lines += ["", "Typical AU combinations of the basic expressions (EMFACS prototypes; any one may appear):"]
    for name, prototypes in PROTOTYPES.items():
        combos = "; ".join("+".join(_in_au_order(p)) or "no AU active" for p in prototypes)
        lines.append(f"- {name}: {combos}")
    lines += [
        "",
        "Valence (negative -1 .. positive +1) and arousal (calm -1 .. excited +1) anchors of each expression"
        " on the circumplex of affect:",
    ]
    lines += [f"- {name}: valence {v:+.2f}, arousal {a:+.2f}" for name, (v, a) in CIRCUMPLEX.items()]
    lines += [
        "",
        "The three levels must agree: e.g. happiness has positive valence and AU12; sadness shows AU1, AU4 or AU15"
        " and negative valence; surprise has high arousal; anger lowers the brows (AU4) and does not smile (AU12).",
    ]
    return "\n".join(lines)


def _range_check(
    expression: str, level: str, value: float, bounds: tuple[float, float] | None
) -> tuple[float, str | None]:
    if bounds is None:
        return 1.0, None
    low, high = bounds
    distance = max(low - value, value - high, 0.0)
    if distance == 0.0:
        return 1.0, None
    expected = f"expected >= {low:.2f}" if value < low else f"expected <= {high:.2f}"
    return max(0.0, 1.0 - distance / RANGE_TOLERANCE), f"{expression} with {level} {value:.2f} ({expected})"


def _au_checks(expression: str, active: set[str], coded: set[str]) -> list[tuple[float, str | None]]:
    checks: list[tuple[float, str | None]] = []
    signature = SIGNATURE_AUS.get(expression, frozenset())
    if signature & coded and not signature & active:
        wanted = "/".join(_in_au_order(signature))
        phrase = f"any of {wanted}" if len(signature) > 1 else wanted
        checks.append((MISSING_SIGNATURE_SCORE, f"{expression} without {phrase}"))
    for name, au, explained_by in CONTRADICTING_AUS:
        if name == expression and au in active and not explained_by & active:
            absent = "/".join(_in_au_order(explained_by))
            checks.append(
                (CONTRADICTING_AU_SCORE, f"{expression} with {au} ({ACTION_UNITS[au].facs_name}) but no {absent}")
            )
    shown = "+".join(_in_au_order(active)) or "no active AU"
    if expression == "neutral" and active:
        checks.append((expression_au_affinity("neutral", active), f"neutral with active {shown}"))
    elif expression in PROTOTYPES and not checks and frozenset().union(*PROTOTYPES[expression]) & coded:
        affinity = expression_au_affinity(expression, active, coded)
        if affinity < WEAK_AFFINITY:
            score = WEAK_AFFINITY_FLOOR + (1 - WEAK_AFFINITY_FLOOR) * affinity / WEAK_AFFINITY
            checks.append((score, f"{expression} with {shown} matches no prototype well (affinity {affinity:.2f})"))
    return checks


def _au_valence_checks(valence: float, active: set[str]) -> list[tuple[float, str | None]]:
    checks: list[tuple[float, str | None]] = []
    if active >= SMILE and valence < SMILE_MIN_VALENCE:
        checks.append((0.3, f"AU6+AU12 (smile) with valence {valence:.2f}"))
    if active >= SAD_FACE and not {"AU12"} & active and valence > SAD_FACE_MAX_VALENCE:
        checks.append((0.3, f"AU1+AU4+AU15 (sad face) with valence {valence:.2f}"))
    return checks


def _expression_name(expression: str | int | None) -> str | None:
    if expression is None:
        return None
    if isinstance(expression, numbers.Integral):  # a ClassLabel index, also from numpy or Arrow
        expression = int(expression)
        if expression == -1:
            return None
        if not 0 <= expression < len(EXPRESSIONS):
            raise ValueError(f"expression index {expression} outside 0..{len(EXPRESSIONS) - 1}")
        return EXPRESSIONS[expression]
    if expression not in EXPRESSIONS:
        raise ValueError(f"unknown expression {expression!r}; expected one of {EXPRESSIONS}")
    return expression


def _value(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return float(value)


def _known_au(name: str) -> str:
    canonical = au_name(name)
    if not is_known_au(canonical):
        raise ValueError(f"unknown AU name {name!r}; expected names from {AUS}")
    return canonical


def _active_and_coded(aus: Mapping[str, int | None] | Iterable[str] | None) -> tuple[set[str], set[str]]:
    if aus is None:
        return set(), set()
    if isinstance(aus, Mapping):
        values = {_known_au(name): value for name, value in aus.items()}
        return {a for a, v in values.items() if v == 1}, {a for a, v in values.items() if v in (0, 1)}
    if isinstance(aus, str):
        raise TypeError("aus must be a struct mapping or an iterable of AU names, not a string")
    return {_known_au(a) for a in aus}, set(AUS)


def _in_au_order(names: Iterable[str]) -> list[str]:
    return sorted(names, key=AUS.index)
