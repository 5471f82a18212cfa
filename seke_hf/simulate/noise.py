"""How the simulated vision LLM gets things wrong: a seeded, pure noise model (no I/O, no clock).

Real vision LLMs are not coins. Asked the same question about the same face several times, they repeat themselves
on easy faces, split their votes on hard ones, and when they are confidently wrong they stay wrong: averaging more
samples does not remove the error. The model below reproduces that with a per-image *belief*, drawn once per
(image, stated priors) from the model seed, from which every choice of every request is then sampled.

Difficulty `d` in [0, 1] belongs to the image (see `truth.py`). Every rate below is a `NoiseModel` field given as an
(easy, hard) pair: the rate at `d = 0` and at `d = 1`, linearly interpolated in between.

Belief (once per image and priors):
- expression: the belief's top expression is wrong with probability `expression_error`; a wrong top follows a
  realistic confusion (`CONFUSIONS`: fear<->surprise, disgust<->anger, contempt<->neutral, sadness<->neutral, ...).
  The top keeps a share `1 - vote_split` of each sample's probability; the rest goes to the truth (when the top is
  wrong, `truth_share` of it) and to the top's confusion partners.
- valence/arousal: the centre is truth + a per-image bias ~ N(0, `va_bias`) per dimension, plus, when the expression
  belief is wrong, a pull of `belief_pull` toward the wrong expression's circumplex anchor. Averaging cannot remove
  either.
- action units: each active AU is missed with probability `au_miss`, each inactive AU is hallucinated with
  probability `au_false`; when the expression belief is wrong, the wrong expression's prototype AUs are added with
  probability `belief_pull`. A believed-present AU is then left out by a share `au_split` of samples, a
  believed-absent one reported by a share `au_flicker` (models omit more often than they hallucinate). With
  probability `au_ambivalence` an open AU is *ambivalent* instead: the model names it in a share of samples drawn
  uniformly from [0.25, 0.75], shifted toward the truth by `ambivalent_lean` (a weak detector: more samples only
  confirm the ambiguity, and the greedy answer is right only a little more often than a coin).
- confident mistakes: a wrong belief keeps only a share `1 - wrong_confidence` of its `vote_split`, so it is
  repeated across samples rather than split.

Samples (once per choice): the expression and AUs are drawn from the belief tempered by the temperature (`p**(1/T)`,
renormalised; `T = 0` takes the most likely answer, so every choice is identical); valence/arousal = centre +
N(0, `va_noise` * T). With `temperature_drift`, sampling also flattens toward the confusions: a share
`temperature_drift * T` of each sampled expression's probability moves to the confusion partners of the greedy answer
(real models decode their label after tokens that sampling perturbs), so on a face the model gets right by a modest
margin the sampled majority can be a confusion while the greedy (T = 0) answer is right. The request's `seed`
fixes the sampling stream, the model `seed` fixes the beliefs.

Priors: a level stated in the prompt (the human label of a partially labelled corpus) is answered as stated, and
each consistent stated level lowers the difficulty of the other levels by the factor `1 - prior_gain` (a known
"happiness" makes AU6/AU12 and a positive valence easier to see). A stated level that contradicts the truth does
not help.

Unknown images (not in the truth table) are answered from a flat belief seeded by the image: high uncertainty.

Profiles (`PROFILES`, `NoiseModel.from_profile`): named settings of these rates for rehearsing the annotator on
models unlike the default one: `default`, `ambivalent-aus`, `noisy-va`, `confident-errors` and `weak` (all three at
once). See `PROFILES` for what each one stands for.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from seke_hf.knowledge import CIRCUMPLEX, PROTOTYPES
from seke_hf.schema import AUS, EXPRESSIONS

CONFUSIONS: dict[str, dict[str, float]] = {
    "neutral": {"sadness": 0.4, "contempt": 0.3, "other": 0.2, "happiness": 0.1},
    "anger": {"disgust": 0.6, "contempt": 0.2, "fear": 0.1, "sadness": 0.1},
    "disgust": {"anger": 0.6, "contempt": 0.2, "sadness": 0.2},
    "fear": {"surprise": 0.7, "sadness": 0.2, "anger": 0.1},
    "happiness": {"neutral": 0.5, "surprise": 0.3, "contempt": 0.2},
    "sadness": {"neutral": 0.5, "fear": 0.25, "disgust": 0.25},
    "surprise": {"fear": 0.6, "happiness": 0.3, "neutral": 0.1},
    "contempt": {"neutral": 0.5, "disgust": 0.3, "happiness": 0.2},
    "other": {"neutral": 0.6, "contempt": 0.4},
}
"""Which expressions a vision LLM mistakes for which (weights of the wrong answer). The pairs are the confusions
commonly reported for FER (RAF-DB/AffectNet confusion matrices): fear/surprise, disgust/anger, and low-intensity
expressions read as neutral."""

VA_ANCHORS: dict[str, tuple[float, float]] = {**CIRCUMPLEX, "other": CIRCUMPLEX["neutral"]}
"""(valence, arousal) of each expression on the circumplex (`seke_hf.knowledge.CIRCUMPLEX`; "other" sits at the
centre), used to fill a missing truth and to pull a wrong belief."""

PROTOTYPE_AUS: dict[str, tuple[str, ...]] = {
    expression: tuple(au for au in AUS if au in PROTOTYPES.get(expression, (frozenset(),))[0])
    for expression in EXPRESSIONS
}
"""The first (fullest common) EMFACS prototype of each expression (`seke_hf.knowledge.PROTOTYPES`); none for
"other"."""


@dataclass(frozen=True)
class Labels:
    """The full hidden labels of one face."""

    expression: str
    valence: float
    arousal: float
    aus: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.expression not in EXPRESSIONS:
            raise ValueError(f"unknown expression {self.expression!r}; expected one of {EXPRESSIONS}")
        unknown = set(self.aus) - set(AUS)
        if unknown:
            raise ValueError(f"unknown AU name(s) {sorted(unknown)}; expected names from {AUS}")


@dataclass(frozen=True)
class Priors:
    """Labels stated in the prompt as known facts (parsed by `request.parse_priors`)."""

    expression: str | None = None
    valence: float | None = None
    arousal: float | None = None
    aus_present: frozenset[str] = frozenset()
    aus_absent: frozenset[str] = frozenset()

    @property
    def has_va(self) -> bool:
        return self.valence is not None and self.arousal is not None

    @property
    def has_aus(self) -> bool:
        return bool(self.aus_present or self.aus_absent)

    def key(self) -> str:
        """A canonical string: the belief is drawn once per (image, this key)."""
        return (
            f"e={self.expression};v={self.valence};a={self.arousal};"
            f"p={','.join(sorted(self.aus_present))};n={','.join(sorted(self.aus_absent))}"
        )


@dataclass(frozen=True)
class Belief:
    """What the model thinks of one image: distributions that every choice is sampled from."""

    expression: dict[str, float]
    valence: float
    arousal: float
    va_noise: float
    aus: dict[str, float]
    """Probability that a sample (at temperature 1) reports each AU present."""

    @property
    def top_expression(self) -> str:
        return max(self.expression, key=self.expression.__getitem__)

    @property
    def confidence(self) -> float:
        return self.expression[self.top_expression]


@dataclass(frozen=True)
class Sample:
    """One choice's answer."""

    expression: str
    valence: float
    arousal: float
    action_units: tuple[str, ...]
    confidence: float = 1.0


Rate = tuple[float, float]


@dataclass(frozen=True)
class NoiseModel:
    """Every rate of the noise model, as (at difficulty 0, at difficulty 1). See the module docstring."""

    seed: int = 0
    expression_error: Rate = (0.02, 0.6)
    vote_split: Rate = (0.0, 0.55)
    truth_share: float = 0.6
    va_bias: Rate = (0.03, 0.3)
    va_noise: Rate = (0.02, 0.2)
    belief_pull: float = 0.5
    au_miss: Rate = (0.03, 0.45)
    au_false: Rate = (0.01, 0.15)
    au_split: Rate = (0.0, 0.4)
    au_flicker: Rate = (0.0, 0.1)
    au_ambivalence: Rate = (0.0, 0.0)
    ambivalent_lean: float = 0.1
    wrong_confidence: float = 0.0
    temperature_drift: float = 0.0
    prior_gain: float = 0.5
    unknown_confidence: float = 0.3
    """Top share of the flat belief an unknown image gets."""
    floor: float = field(default=1e-4, repr=False)
    """Probability mass every expression keeps, so an enum restricted to unlikely candidates still has an answer."""

    def __post_init__(self) -> None:
        """A single number for a rate means the same rate at every difficulty; every rate must be in [0, 1]."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _RATE_FIELDS:
                pair = (float(value), float(value)) if isinstance(value, (int, float)) else tuple(map(float, value))
                if len(pair) != 2:
                    raise ValueError(f"{f.name} must be a rate or an (easy, hard) pair of rates, got {value!r}")
                object.__setattr__(self, f.name, pair)
                value = pair
            if f.name in _RATE_FIELDS | _SHARE_FIELDS and not all(0.0 <= v <= 1.0 for v in np.atleast_1d(value)):
                raise ValueError(f"{f.name} must be in [0, 1], got {value!r}")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_profile(cls, profile: str = "default", **overrides: object) -> NoiseModel:
        """The noise model of a named profile (`PROFILES`), with any field overridden."""
        if profile not in PROFILES:
            raise ValueError(f"unknown noise profile {profile!r}; profiles are {', '.join(PROFILES)}")
        return cls(**{**PROFILES[profile].rates, **overrides})

    # ---------------------------------------------------------------- belief
    def belief(self, truth: Labels, difficulty: float, priors: Priors = Priors(), key: str = "") -> Belief:
        """The per-image belief, drawn from the model seed, the image key and the priors only."""
        rng = _rng(self.seed, "belief", key, priors.key())
        consistent = _consistent_levels(truth, priors)
        d_expr = _eased(difficulty, self.prior_gain, consistent - {"expression"})
        d_va = _eased(difficulty, self.prior_gain, consistent - {"valence_arousal"})
        d_aus = _eased(difficulty, self.prior_gain, consistent - {"aus"})

        # Draw every random number in a fixed order, so a change of one rate does not reshuffle the others.
        u_wrong = rng.random()
        confusion_pick = rng.random()
        bias = rng.normal(0.0, 1.0, size=2)
        u_aus = rng.random(len(AUS))
        u_proto = rng.random(len(AUS))
        u_ambivalent = rng.random(len(AUS))  # drawn after the older numbers: the default profile is unchanged
        u_share = rng.random(len(AUS))

        if priors.expression is not None:
            expression = {e: (1.0 if e == priors.expression else 0.0) for e in EXPRESSIONS}
            wrong = None if priors.expression == truth.expression else priors.expression
        else:
            wrong = None
            if u_wrong < _lerp(self.expression_error, d_expr):
                wrong = _weighted_pick(CONFUSIONS[truth.expression], confusion_pick)
            split = _lerp(self.vote_split, d_expr)
            if wrong is not None:
                split *= 1.0 - self.wrong_confidence
            expression = self._expression_belief(truth.expression, wrong, split)
        expression = _with_floor(expression, self.floor)

        if priors.has_va:
            valence, arousal = float(priors.valence), float(priors.arousal)
        else:
            sd = _lerp(self.va_bias, d_va)
            valence, arousal = truth.valence + sd * bias[0], truth.arousal + sd * bias[1]
            if wrong is not None:
                wv, wa = VA_ANCHORS[wrong]
                valence += self.belief_pull * (wv - valence)
                arousal += self.belief_pull * (wa - arousal)
        va_noise = 0.0 if priors.has_va else _lerp(self.va_noise, d_va)

        # AUs the prompt states are answered as stated; the others are still seen through the noise.
        open_aus = set(AUS) - priors.aus_present - priors.aus_absent
        miss, false = _lerp(self.au_miss, d_aus), _lerp(self.au_false, d_aus)
        proto = set(PROTOTYPE_AUS[wrong]) if wrong is not None else set()
        split, flicker = _lerp(self.au_split, d_aus), _lerp(self.au_flicker, d_aus)
        ambivalence = _lerp(self.au_ambivalence, d_aus)
        aus: dict[str, float] = {}
        for i, au in enumerate(AUS):
            if au in open_aus and u_ambivalent[i] < ambivalence:
                lean = self.ambivalent_lean if au in truth.aus else -self.ambivalent_lean
                aus[au] = min(0.75, max(0.25, 0.25 + 0.5 * u_share[i] + lean))
            elif au in open_aus:
                present = (u_aus[i] >= miss) if au in truth.aus else (u_aus[i] < false)
                present = present or (au in proto and u_proto[i] < self.belief_pull)
                aus[au] = 1.0 - split if present else flicker
            else:
                aus[au] = 1.0 if au in priors.aus_present else 0.0
        return Belief(expression, _clip(valence), _clip(arousal), va_noise, aus)

    def unknown_belief(self, image_key: str) -> Belief:
        """A flat belief for a face the truth table does not know: any answer, little agreement."""
        rng = _rng(self.seed, "unknown", image_key)
        top = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
        rest = (1.0 - self.unknown_confidence) / (len(EXPRESSIONS) - 1)
        expression = {e: (self.unknown_confidence if e == top else rest) for e in EXPRESSIONS}
        valence, arousal = rng.normal(0.0, 0.3, size=2)
        aus = {au: float(p) for au, p in zip(AUS, rng.uniform(0.2, 0.6, size=len(AUS)), strict=True)}
        return Belief(expression, _clip(valence), _clip(arousal), 0.35, aus)

    def _expression_belief(self, truth: str, wrong: str | None, split: float) -> dict[str, float]:
        top = wrong or truth
        probs = dict.fromkeys(EXPRESSIONS, 0.0)
        probs[top] = 1.0 - split
        if wrong is not None:
            probs[truth] += split * self.truth_share
            others = {e: w for e, w in CONFUSIONS[top].items() if e != truth}
            rest = split * (1.0 - self.truth_share)
        else:
            others, rest = CONFUSIONS[top], split
        total = sum(others.values())
        for e, w in others.items():
            probs[e] += rest * w / total
        return probs

    # ---------------------------------------------------------------- samples
    def sample(
        self,
        belief: Belief,
        rng: np.random.Generator,
        temperature: float = 1.0,
        expressions: Sequence[str] | None = None,
        aus: Iterable[str] | None = None,
    ) -> Sample:
        """One choice: `expressions`/`aus` restrict the answer to candidates (an enum in the asked schema)."""
        candidates = expression_candidates(belief, expressions)
        weights = np.array([belief.expression[e] for e in candidates])
        probs = _tempered(weights, temperature)
        drift = self.temperature_drift * min(temperature, 1.0)
        if drift > 0:  # sampling flattens toward the greedy answer's confusions
            partners = CONFUSIONS[belief.top_expression]
            pull = np.array([partners.get(e, 0.0) for e in candidates])
            if pull.sum() > 0:
                probs = (1.0 - drift) * probs + drift * pull / pull.sum()
        expression = candidates[_drawn_index(probs, rng.random())]
        u_va = rng.normal(0.0, 1.0, size=2)
        u_aus = rng.random(len(AUS))
        scale = belief.va_noise * temperature
        valence = _clip(belief.valence + scale * u_va[0])
        arousal = _clip(belief.arousal + scale * u_va[1])
        allowed = set(AUS if aus is None else aus)
        active = tuple(
            au
            for i, au in enumerate(AUS)
            if au in allowed and _tempered_bernoulli(belief.aus[au], temperature, u_aus[i])
        )
        confidence = float(weights.max() / weights.sum())
        return Sample(expression, round(valence, 2), round(arousal, 2), active, round(confidence, 2))


def expression_candidates(belief: Belief, expressions: Sequence[str] | None = None) -> list[str]:
    """The expressions an answer may take: those an enum (or the prompt) allows that the belief knows; all if none."""
    return [e for e in (expressions or EXPRESSIONS) if e in belief.expression] or list(EXPRESSIONS)


_RATE_FIELDS = frozenset(
    {
        "expression_error",
        "vote_split",
        "va_bias",
        "va_noise",
        "au_miss",
        "au_false",
        "au_split",
        "au_flicker",
        "au_ambivalence",
    }
)
_SHARE_FIELDS = frozenset(
    {
        "truth_share",
        "belief_pull",
        "prior_gain",
        "unknown_confidence",
        "floor",
        "ambivalent_lean",
        "wrong_confidence",
        "temperature_drift",
    }
)


@dataclass(frozen=True)
class Profile:
    """A named regime of the simulated model: its noise rates and what real behaviour it stands for."""

    rates: dict[str, object]
    summary: str


PROFILES: dict[str, Profile] = {
    "default": Profile(
        {},
        "A capable model: easy faces answered unanimously, hard ones split between realistic confusions, AUs "
        "mostly clear-cut, valence/arousal samples within about 0.1 of each other.",
    ),
    "ambivalent-aus": Profile(
        {"au_ambivalence": (0.25, 0.6), "au_miss": (0.1, 0.45), "au_false": (0.03, 0.15)},
        "A weak action-unit detector (as real vision LLMs are): for a quarter to more than half of a face's AUs "
        "the chance that a sample names the AU lies between 0.25 and 0.75.",
    ),
    "noisy-va": Profile(
        {"va_noise": (0.2, 0.3), "va_bias": (0.08, 0.3)},
        "Unstable valence/arousal: samples at temperature 0.8 spread by 0.15-0.25 around a per-face belief that is "
        "itself biased.",
    ),
    "confident-errors": Profile(
        {"expression_error": (0.08, 0.6), "wrong_confidence": 0.8, "vote_split": (0.1, 0.55),
         "temperature_drift": 0.35},
        "Confident mistakes, repeated across samples, and sampling that flattens toward the confusions: the "
        "temperature-0 answer is more accurate than the majority of samples at temperature 0.8 (as measured on a "
        "real expression classifier).",
    ),
    "weak": Profile(
        {"au_ambivalence": (0.25, 0.6), "au_miss": (0.1, 0.45), "au_false": (0.03, 0.15), "va_noise": (0.2, 0.3),
         "va_bias": (0.08, 0.3), "expression_error": (0.08, 0.6), "wrong_confidence": 0.8,
         "vote_split": (0.1, 0.55), "temperature_drift": 0.35},
        "All three at once: ambivalent AUs, noisy valence/arousal and confident expression errors.",
    ),
}  # fmt: skip
"""Named noise settings (`NoiseModel.from_profile`, `SimulatedVLLM(profile=...)`, `seke-hf simulate --profile`)."""


def truth_seed(*parts: object) -> int:
    """A stable 64-bit seed from identifying parts (Python's hash() changes between processes)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(truth_seed(*parts))


def _lerp(rate: Rate, d: float) -> float:
    easy, hard = rate
    return easy + (hard - easy) * min(1.0, max(0.0, d))


def _eased(difficulty: float, gain: float, helping: set[str]) -> float:
    return difficulty * (1.0 - gain) ** len(helping)


def _consistent_levels(truth: Labels, priors: Priors) -> set[str]:
    """The stated levels that agree with the truth: only those make the other answers better."""
    levels = set()
    if priors.expression is not None and priors.expression == truth.expression:
        levels.add("expression")
    if priors.has_va and math.hypot(priors.valence - truth.valence, priors.arousal - truth.arousal) <= 0.3:
        levels.add("valence_arousal")
    if priors.has_aus:
        coded = priors.aus_present | priors.aus_absent
        agree = sum((au in priors.aus_present) == (au in truth.aus) for au in coded)
        if agree >= 0.8 * len(coded):
            levels.add("aus")
    return levels


def _weighted_pick(weights: dict[str, float], u: float) -> str:
    total, acc = sum(weights.values()), 0.0
    for name, w in weights.items():
        acc += w / total
        if u < acc:
            return name
    return next(reversed(weights))


def _with_floor(probs: dict[str, float], floor: float) -> dict[str, float]:
    total = sum(max(p, floor) for p in probs.values())
    return {e: max(p, floor) / total for e, p in probs.items()}


def _tempered(weights: np.ndarray, temperature: float) -> np.ndarray:
    """`weights**(1/T)`, renormalised; T = 0 puts all the mass on the most likely answer."""
    if temperature <= 0:
        probs = np.zeros(len(weights))
        probs[int(np.argmax(weights))] = 1.0
        return probs
    logits = np.log(weights) / temperature
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _drawn_index(probs: np.ndarray, u: float) -> int:
    cumulative = np.cumsum(probs)
    return int(min(np.searchsorted(cumulative, u * cumulative[-1], side="right"), len(probs) - 1))


def _tempered_bernoulli(p: float, temperature: float, u: float) -> bool:
    if p <= 0.0 or p >= 1.0 or temperature <= 0:
        return p > 0.5
    a, b = p ** (1.0 / temperature), (1.0 - p) ** (1.0 / temperature)
    return u < a / (a + b)


def _clip(x: float) -> float:
    return float(min(1.0, max(-1.0, x)))
