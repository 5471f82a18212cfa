"""SV-UAMC, the pure part: stopping rules, aggregation, uncertainty, verification and acceptance. No I/O.

Our reading of the method of SEKE (arXiv 2505.18168; the paper body with its exact rule is not public), with every
constant a field of `SVUAMCConfig`:

1. Sampling is adaptive. A first request draws `min_samples` choices; further rounds are drawn only while a
   requested level is undecided, up to `max_samples`, each as large as the vote shares seen so far say is needed
   (or `round_samples` choices).
2. Decided means, for the expression, the Beta stopping rule of Adaptive-Consistency (Aggarwal et al., EMNLP 2023,
   arXiv 2305.11860): with top-two vote counts v1 > v2 and p1/(p1 + p2) ~ Beta(v1 + 1, v2 + 1), stop once
   P(p1 > p2) >= `confidence`. Each AU is decided the same way on its yes/no votes (its share decisively above or
   below 1/2) at `au_confidence`, lower by default because all 17 AUs must be decided at once. Valence/arousal are
   decided once the standard error of both sample means is <= `va_tolerance`.
3. Uncertainty per level comes from the disagreement of the samples: 1 - top share (expression), mean binary
   entropy of the AU vote shares (AUs), the root mean square sample standard deviation (valence/arousal).
4. A level still contested at `max_samples` goes to one temperature-0 verification request restricted to the
   competing candidates (expression: the labels not decisively beaten; AUs: the undecided ones). The verifier's
   answer settles the contest if it names a candidate; otherwise the majority stands. Then the knowledge
   consistency check (`seke_hf.knowledge.consistency`) scores the whole label set, human labels included: when it
   fails, a contested expression is replaced by its most consistent candidate; labels that still fail are rejected
   if a generated level was contested (`reject_inconsistent="undecided"`; "always", "expression" and "never" are
   the alternatives) and otherwise kept with the issues in `status_reason`: a confident model seeing a face that
   departs from the prototypes is a fact about the face more often than an error. An example is also rejected when
   a level's sample disagreement stays above its `max_uncertainty` (by default only the expression: top share under
   60% after every sample). A contested AU alone never rejects an example: the verdict fills it, the uncertainty
   flags it. Human labels that contradict each other are never held against the generated ones.
5. Each level's description comes from a sample agreeing with that level's final label.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from seke_hf.schema import AUS, EXPRESSIONS

VERSION = "1"
"""Bumped whenever the algorithm's outputs change for the same inputs (enters the annotator's fingerprint)."""

EXPRESSION, VALENCE_AROUSAL, AU_LEVEL = "expression", "valence_arousal", "aus"
"""The three label levels (`seke_hf.schema.LEVELS`); `AU_LEVEL` is the level, the AU glossary is
`seke_hf.knowledge.ACTION_UNITS`."""


@dataclass(frozen=True)
class SVUAMCConfig:
    min_samples: int = 4
    max_samples: int = 16
    round_samples: int | None = None  # choices per extra round; None: sized by projection (`projected_samples`)
    confidence: float = 0.95
    au_confidence: float | None = 0.8  # per-AU stopping confidence (17 AUs must all be decided); None: `confidence`
    va_tolerance: float = 0.08
    verify: bool = True
    consistency_threshold: float = 0.5
    reject_inconsistent: str = "undecided"  # or "always", "expression" (when it was generated), "never"
    max_uncertainty: Mapping[str, float] = field(
        default_factory=lambda: {EXPRESSION: 0.4, VALENCE_AROUSAL: 0.6, AU_LEVEL: 1.0}
    )

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.max_samples:
            raise ValueError(f"need 1 <= min_samples <= max_samples, got {self.min_samples}, {self.max_samples}")
        if self.reject_inconsistent not in ("always", "undecided", "expression", "never"):
            raise ValueError(
                f"reject_inconsistent must be always, undecided, expression or never, got {self.reject_inconsistent!r}"
            )
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")


@dataclass(frozen=True)
class Sample:
    """One parsed model answer; a field is None when the answer did not give it (or gave it invalid)."""

    expression: str | None = None
    valence: float | None = None
    arousal: float | None = None
    aus: frozenset[str] | None = None
    description: str | Mapping[str, str] | None = None

    def describe(self, level: str) -> str | None:
        """This sample's description of `level` (a per-level object, or the one free text)."""
        if isinstance(self.description, Mapping):
            text = self.description.get(level)
            return text if isinstance(text, str) and text.strip() else None
        return self.description if isinstance(self.description, str) and self.description.strip() else None


# -- stopping rules ----------------------------------------------------------------------------------------------------
def prob_greater(a: int, b: int) -> float:
    """P(p_a > p_b) for vote counts a, b with p_a / (p_a + p_b) ~ Beta(a + 1, b + 1) (uniform prior).

    For integer parameters 1 - I_{1/2}(a + 1, b + 1) = P(Binomial(a + b + 1, 1/2) <= a): exact, no SciPy.
    """
    if a < 0 or b < 0:
        raise ValueError("vote counts must be >= 0")
    total = a + b + 1
    return math.fsum(math.comb(total, k) for k in range(a + 1)) / 2**total


@dataclass(frozen=True)
class ExpressionVote:
    label: str | None
    counts: dict[str, int]
    decided: bool
    uncertainty: float
    candidates: tuple[str, ...]  # the labels not decisively beaten by the leader (leader first)


def expression_vote(votes: Iterable[str | None], confidence: float) -> ExpressionVote:
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return ExpressionVote(None, {}, False, 1.0, ())
    # Ties break by EXPRESSIONS order, so the result never depends on arrival order.
    ranked = sorted(counts, key=lambda e: (-counts[e], EXPRESSIONS.index(e)))
    top = ranked[0]
    contenders = [e for e in ranked[1:] if prob_greater(counts[top], counts[e]) < confidence]
    runner_up = counts[ranked[1]] if len(ranked) > 1 else 0
    decided = prob_greater(counts[top], runner_up) >= confidence
    uncertainty = 1.0 - counts[top] / sum(counts.values())
    return ExpressionVote(top, dict(counts), decided, uncertainty, (top, *contenders))


@dataclass(frozen=True)
class AUVote:
    active: frozenset[str]
    shares: dict[str, float]
    undecided: tuple[str, ...]
    uncertainty: float
    votes: int

    @property
    def decided(self) -> bool:
        return self.votes > 0 and not self.undecided


def au_vote(votes: Iterable[frozenset[str] | None], confidence: float, names: Sequence[str] = AUS) -> AUVote:
    """Per-AU majority; an AU is decided when P(share > 1/2) or P(share < 1/2) reaches `confidence`."""
    sets = [v for v in votes if v is not None]
    m = len(sets)
    if m == 0:
        return AUVote(frozenset(), {}, tuple(names), 1.0, 0)
    active, shares, undecided, entropy = set(), {}, [], 0.0
    for au in names:
        k = sum(au in s for s in sets)
        shares[au] = k / m
        if 2 * k > m:
            active.add(au)
        if max(prob_greater(k, m - k), prob_greater(m - k, k)) < confidence:
            undecided.append(au)
        entropy += _binary_entropy(k / m)
    return AUVote(frozenset(active), shares, tuple(undecided), entropy / len(names), m)


@dataclass(frozen=True)
class VAVote:
    valence: float | None
    arousal: float | None
    standard_error: float
    decided: bool
    uncertainty: float
    votes: int


def va_vote(pairs: Iterable[tuple[float | None, float | None]], tolerance: float) -> VAVote:
    """Mean valence/arousal; decided once both standard errors are <= `tolerance` (needs two samples)."""
    valid = [(v, a) for v, a in pairs if v is not None and a is not None]
    m = len(valid)
    if m == 0:
        return VAVote(None, None, math.inf, False, 1.0, 0)
    vs, as_ = [v for v, _ in valid], [a for _, a in valid]
    sd_v, sd_a = _sd(vs), _sd(as_)
    se = max(sd_v, sd_a) / math.sqrt(m) if m > 1 else math.inf
    spread = math.sqrt((sd_v**2 + sd_a**2) / 2)
    return VAVote(_clip(sum(vs) / m), _clip(sum(as_) / m), se, se <= tolerance, spread, m)


# -- aggregation over the samples of one example ---------------------------------------------------------------------
@dataclass(frozen=True)
class Aggregate:
    levels: tuple[str, ...]
    samples: int  # choices drawn, parseable or not
    expression: ExpressionVote | None
    va: VAVote | None
    aus: AUVote | None

    @property
    def undecided(self) -> tuple[str, ...]:
        pending = []
        if self.expression is not None and not self.expression.decided:
            pending.append(EXPRESSION)
        if self.va is not None and not self.va.decided:
            pending.append(VALENCE_AROUSAL)
        if self.aus is not None and not self.aus.decided:
            pending.append(AU_LEVEL)
        return tuple(pending)


def aggregate(samples: Sequence[Sample | None], levels: Iterable[str], config: SVUAMCConfig) -> Aggregate:
    """Vote on each requested level; a None sample (bad JSON) counts as drawn but votes on nothing."""
    levels = tuple(levels)
    valid = [s for s in samples if s is not None]
    return Aggregate(
        levels,
        len(samples),
        expression_vote((s.expression for s in valid), config.confidence) if EXPRESSION in levels else None,
        va_vote(((s.valence, s.arousal) for s in valid), config.va_tolerance) if VALENCE_AROUSAL in levels else None,
        au_vote((s.aus for s in valid), config.au_confidence or config.confidence) if AU_LEVEL in levels else None,
    )


def next_round(agg: Aggregate, config: SVUAMCConfig) -> int:
    """How many more choices to draw (0: stop): a round while some level is undecided and budget remains.

    With `round_samples=None` the round is sized by projection: as many choices as the undecided levels need to be
    decided if the vote shares (or the sample spread) seen so far hold, so a clear 3-to-1 lead is settled in one
    more request rather than several (each request re-sends the image and costs a round trip).
    """
    if not agg.levels:
        return 0
    if agg.samples == 0:
        return config.min_samples
    remaining = config.max_samples - agg.samples
    if not agg.undecided or remaining <= 0:
        return 0
    if config.round_samples is not None:
        return min(config.round_samples, remaining)
    return min(max(projected_samples(agg, config) - agg.samples, 1), remaining)


def projected_samples(agg: Aggregate, config: SVUAMCConfig) -> int:
    """Total choices the undecided levels would need if their current shares held (capped at `max_samples`)."""
    cap = config.max_samples
    needed = agg.samples
    if agg.expression is not None and not agg.expression.decided:
        ranked = [*sorted(agg.expression.counts.values(), reverse=True), 0, 0]
        needed = max(needed, _votes_needed(ranked[0], ranked[1], config.confidence, cap))
    if agg.aus is not None and agg.aus.votes and not agg.aus.decided:
        m = agg.aus.votes
        for au in agg.aus.undecided:
            k = round(agg.aus.shares[au] * m)
            needed = max(
                needed, _votes_needed(max(k, m - k), min(k, m - k), config.au_confidence or config.confidence, cap)
            )
    if agg.va is not None and agg.va.votes > 1 and not agg.va.decided:
        spread = agg.va.standard_error * math.sqrt(agg.va.votes)
        needed = max(needed, math.ceil((spread / config.va_tolerance) ** 2))
    votes = max((v for v in _vote_counts(agg) if v), default=0)
    if votes and votes < agg.samples:  # some choices were unusable: expect the same share again
        needed = math.ceil(needed * agg.samples / votes)
    return min(needed, cap)


def _votes_needed(lead: int, behind: int, confidence: float, cap: int) -> int:
    """Smallest total n <= cap at which the same lead share would pass the Beta rule (cap if none)."""
    total = lead + behind
    if total == 0 or lead <= behind:
        return cap
    for n in range(total + 1, cap + 1):
        if prob_greater(lead * n // total, -(-behind * n // total)) >= confidence:  # lead rounded down, behind up
            return n
    return cap


def _vote_counts(agg: Aggregate) -> list[int]:
    counts = []
    if agg.expression is not None:
        counts.append(sum(agg.expression.counts.values()))
    if agg.aus is not None:
        counts.append(agg.aus.votes)
    if agg.va is not None:
        counts.append(agg.va.votes)
    return counts


# -- verification and acceptance ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contest:
    """What a verification request must settle: competing expressions and undecided AUs."""

    expressions: tuple[str, ...] = ()
    aus: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.expressions or self.aus)


def contest(agg: Aggregate, config: SVUAMCConfig) -> Contest:
    """The contested parts at the end of sampling (nothing when verification is off)."""
    if not config.verify:
        return Contest()
    expressions = agg.expression.candidates if agg.expression and not agg.expression.decided else ()
    aus = agg.aus.undecided if agg.aus and agg.aus.votes else ()
    return Contest(expressions if len(expressions) > 1 else (), aus)


@dataclass(frozen=True)
class LevelResult:
    value: Any  # expression name | (valence, arousal) | frozenset of active AUs
    uncertainty: float
    description: str | None
    verified: bool = False  # settled by the verification request or by knowledge
    decided: bool = True  # decided by sampling alone (the stopping rule was met)


@dataclass(frozen=True)
class Decision:
    status: str  # "accepted" or "rejected"
    reason: str
    levels: dict[str, LevelResult]


ConsistencyFn = Callable[..., Any]
"""`seke_hf.knowledge.consistency`: (expression=, valence=, arousal=, aus=) -> object with .score and .issues."""


def decide(
    samples: Sequence[Sample | None],
    agg: Aggregate,
    config: SVUAMCConfig,
    *,
    verdict: Sample | None = None,
    contested: Contest = Contest(),
    human: Mapping[str, Any] | None = None,
    consistency: ConsistencyFn | None = None,
) -> Decision:
    """Final labels, uncertainties and descriptions for the requested levels, and accept or reject.

    `human` holds the human labels (`expression` name, `valence`, `arousal`, `aus` active set); `verdict` is the
    parsed verification answer for `contested`.
    """
    human = dict(human or {})
    valid = [s for s in samples if s is not None]
    results: dict[str, LevelResult] = {}
    missing = []
    expression_candidates: tuple[str, ...] = ()
    if agg.expression is not None:
        vote = agg.expression
        label, verified = vote.label, False
        if contested.expressions and verdict is not None and verdict.expression in contested.expressions:
            label, verified = verdict.expression, True
        expression_candidates = contested.expressions
        if label is None:
            missing.append(EXPRESSION)
        else:
            results[EXPRESSION] = LevelResult(label, vote.uncertainty, None, verified, vote.decided)
    if agg.va is not None:
        if agg.va.valence is None:
            missing.append(VALENCE_AROUSAL)
        else:
            va = agg.va
            results[VALENCE_AROUSAL] = LevelResult((va.valence, va.arousal), va.uncertainty, None, False, va.decided)
    if agg.aus is not None:
        if agg.aus.votes == 0:
            missing.append(AU_LEVEL)
        else:
            active, verified = set(agg.aus.active), False
            if contested.aus and verdict is not None and verdict.aus is not None:
                for au in contested.aus:
                    (active.add if au in verdict.aus else active.discard)(au)
                verified = True
            results[AU_LEVEL] = LevelResult(frozenset(active), agg.aus.uncertainty, None, verified, agg.aus.decided)
    if missing:
        return Decision("rejected", f"no valid answer for {', '.join(missing)} in {agg.samples} samples", {})

    reason = ""
    if consistency is not None and consistency(**_merged(human, {})).score < config.consistency_threshold:
        reason = "human labels contradict each other: knowledge check skipped"
    elif consistency is not None:
        labels = _merged(human, results)
        check = consistency(**labels)
        if check.score < config.consistency_threshold and len(expression_candidates) > 1:
            # Knowledge decides between candidates the samples could not separate.
            best = max(expression_candidates, key=lambda e: consistency(**{**labels, "expression": e}).score)
            if best != results[EXPRESSION].value:
                results[EXPRESSION] = LevelResult(best, results[EXPRESSION].uncertainty, None, True, False)
                labels = _merged(human, results)
                check = consistency(**labels)
        issues = "; ".join(check.issues)
        if check.score < config.consistency_threshold:
            undecided = [level for level, r in results.items() if not r.decided]
            if config.reject_inconsistent == "expression":
                undecided = undecided or [EXPRESSION] * (EXPRESSION in results)
            if config.reject_inconsistent == "always" or (config.reject_inconsistent != "never" and undecided):
                why = f" and {', '.join(undecided)} undecided by sampling" if undecided else ""
                return Decision(
                    "rejected",
                    f"inconsistent with emotion knowledge (score {check.score:.2f}){why}: {issues or 'contradiction'}",
                    {},
                )
            reason = f"kept despite knowledge issues (score {check.score:.2f}; decided by sampling): {issues}"
        elif issues:
            reason = issues
    for level, result in results.items():
        limit = config.max_uncertainty.get(level, 1.0)
        if result.uncertainty > limit:
            return Decision(
                "rejected", f"{level} uncertain after {agg.samples} samples: {result.uncertainty:.2f} > {limit}", {}
            )
    described = {
        level: LevelResult(r.value, r.uncertainty, _description(level, r.value, valid, verdict), r.verified)
        for level, r in results.items()
    }
    return Decision("accepted", reason, described)


def _merged(human: Mapping[str, Any], results: Mapping[str, LevelResult]) -> dict[str, Any]:
    labels = {k: human.get(k) for k in ("expression", "valence", "arousal", "aus")}
    if EXPRESSION in results:
        labels["expression"] = results[EXPRESSION].value
    if VALENCE_AROUSAL in results:
        labels["valence"], labels["arousal"] = results[VALENCE_AROUSAL].value
    if AU_LEVEL in results:
        labels["aus"] = sorted(results[AU_LEVEL].value, key=AUS.index)
    return labels


def _description(level: str, value: Any, samples: Sequence[Sample], verdict: Sample | None) -> str | None:
    """The description of the sample closest to the final label (an exact agreement where there is one)."""
    pool = [s for s in samples if s.describe(level)]
    if verdict is not None and verdict.describe(level):
        pool.append(verdict)
    if not pool:
        return None

    def distance(s: Sample) -> float:
        if level == EXPRESSION:
            return 0.0 if s.expression == value else 1.0
        if level == VALENCE_AROUSAL:
            if s.valence is None or s.arousal is None:
                return math.inf
            return abs(s.valence - value[0]) + abs(s.arousal - value[1])
        return math.inf if s.aus is None else float(len(s.aus ^ value))

    best = min(pool, key=distance)  # first of the closest: deterministic
    if level == EXPRESSION and distance(best) > 0:
        return None  # never describe an expression the final label contradicts
    return best.describe(level)


def _binary_entropy(p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _sd(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _clip(x: float) -> float:
    return min(1.0, max(-1.0, x))
