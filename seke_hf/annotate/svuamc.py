"""SV-UAMC, the pure part: the sampling schedule, aggregation, posterior uncertainty and acceptance. No I/O.

Our reading of the method of SEKE (arXiv 2505.18168; the paper body with its exact rule is not public), redesigned
for real vision LLMs (they repeat confident mistakes, their temperature-0 answer is often their best, they are weak
action-unit detectors). Every constant is a field of `SVUAMCConfig`.

1. Two answers of different kinds. A *greedy* answer (temperature 0, one choice, with the per-level descriptions)
   is the anchor, the verifier and the describer; *votes* (`min_samples` choices at the sampling temperature, in
   one request, labels only: completion tokens are the dearest part of a choice) measure how stable it is.
2. Labels. The greedy answer stands unless the votes decisively beat it: for the expression, when the votes' leader
   beats the greedy label (counted `greedy_weight` extra votes) by the Adaptive-Consistency Beta rule
   (Aggarwal et al., EMNLP 2023) at `confidence`; for each AU, when its yes/no votes are decisive at
   `au_confidence`. Valence/arousal: the mean of the votes with the greedy answer weighted `greedy_weight`.
3. Stopping on what more votes can change. The expression is settled once its label beats every rival at
   `confidence`; an AU once its share is decisively above or below 1/2, *or* confidently inside the ambiguous band
   1/2 +- `ambiguous_band` (more votes would only confirm that this model cannot tell, so the greedy answer
   decides and the uncertainty says so); valence/arousal once the standard error of the votes' mean is <=
   `va_tolerance`. An unsettled row gets at most `max_rounds - 1` follow-up requests, each sized to the decision:
   the votes the current shares say are needed, and never so few that the request's overhead (the image and
   prompt it re-sends, from the observed token usage at the annotator's prices) dominates it.
4. Uncertainty is a posterior, so rows that stop early are still ordered: the expression, 1 - the posterior mean
   share of its label (Beta(1, 1) prior over the votes, greedy included, and the model's own probabilities of the
   expressions where the server returns logprobs, counted `logprob_weight` votes: the one measure that tells a
   confident answer from a torn one without sampling, and free of the drift sampling adds) times the knowledge
   score times exp(-d**2 / 2 `anchor_spread`**2), d the distance of the face's valence/arousal from the label's
   circumplex anchor (levels that disagree are where confident mistakes show); the AUs, 1 - (the chance that every
   AU is right, each by its posterior share of the support, mixed with the model's own probability of the set) x
   the AU set's prototype affinity to the expression ("wrong" is any of 17: see `au_vote`); valence/arousal, the
   posterior sample spread (prior spread `va_prior` worth two votes) combined with the distance of the greedy
   answer from the votes' mean and d / 2. Acceptance (`max_uncertainty`) uses these; the reported uncertainty then
   also carries the instability of the same face at its other generated levels (`_with_instability`): a face a
   model is unsure of at one level is where its unanimous answers at another are more often confident mistakes.
5. Human labels outrank agreement. The whole label set is checked with `seke_hf.knowledge.consistency`, human
   labels included; it passes only *above* `consistency_threshold` (a score of exactly 0.5, e.g. "neutral with one
   active AU14", fails). A failing set is never kept because the samples agreed: with `on_inconsistent="fallback"`
   (default) knowledge chooses among the model's own candidates: the expression named by the greedy answer or a
   vote with the highest posterior share x knowledge score, its generated AUs repaired toward consistency (the
   undecided ones first, then any: models are weak AU detectors); if no candidate passes, the generated level
   knowledge cannot reconcile (the expression first) is left missing, and the row is rejected only when nothing
   passes ("reject": no fallback; "keep": kept with the issues and no knowledge discount, the old behaviour).
   Human labels that contradict each other are never held against the generated ones. A level whose uncertainty
   exceeds its `max_uncertainty` is left missing; acceptance is per level, so the row keeps its other labels.
6. Each level's description comes from the answer closest to that level's final label, the greedy answer first
   (votes carry no descriptions unless there is no greedy answer); an expression is never described by an answer
   naming another one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from seke_hf.knowledge import CIRCUMPLEX, expression_au_affinity
from seke_hf.schema import AUS, EXPRESSIONS

VERSION = "3"
"""Bumped whenever the algorithm's outputs change for the same inputs (enters the annotator's fingerprint)."""

EXPRESSION, VALENCE_AROUSAL, AU_LEVEL = "expression", "valence_arousal", "aus"
"""The three label levels (`seke_hf.schema.LEVELS`); `AU_LEVEL` is the level, the AU glossary is
`seke_hf.knowledge.ACTION_UNITS`."""
ON_INCONSISTENT = ("fallback", "reject", "keep")


@dataclass(frozen=True)
class SVUAMCConfig:
    min_samples: int = 4  # votes of the first sampling request (0: the greedy answer alone)
    max_samples: int = 12
    max_rounds: int = 2  # sampling requests at most: the first and one follow-up sized to the decision
    round_samples: int | None = None  # votes per follow-up; None: sized by projection (`follow_up`)
    confidence: float = 0.95
    au_confidence: float | None = 0.8  # per-AU decisiveness (17 AUs at once); None: `confidence`
    ambiguous_band: float = 0.3  # an AU whose share is confidently within 1/2 +- this is settled as ambiguous
    va_tolerance: float = 0.1
    va_prior: float = 0.1  # prior sample spread of valence/arousal (worth two votes) for the posterior
    anchor_spread: float = 0.5  # how far valence/arousal may lie from the expression's circumplex anchor
    verify: bool = True  # the greedy (temperature-0) answer: anchor, verifier and describer
    greedy_weight: int = 2  # votes the greedy answer counts for
    logprobs: bool = True  # ask for the greedy answer's token probabilities (servers without them are asked again)
    logprob_weight: float = 12.0  # votes the model's own probabilities (where given) count for in the posteriors
    consistency_threshold: float = 0.5  # a label set passes only with a knowledge score above this
    on_inconsistent: str = "fallback"  # or "reject", "keep"
    max_uncertainty: Mapping[str, float] = field(
        default_factory=lambda: {EXPRESSION: 0.7, VALENCE_AROUSAL: 1.0, AU_LEVEL: 1.0}
    )

    def __post_init__(self) -> None:
        if not 0 <= self.min_samples <= self.max_samples or self.max_samples < 1:
            raise ValueError(f"need 0 <= min_samples <= max_samples, got {self.min_samples}, {self.max_samples}")
        if self.min_samples == 0 and not self.verify:
            raise ValueError("min_samples=0 needs verify=True: the greedy answer is then the only one")
        if self.on_inconsistent not in ON_INCONSISTENT:
            raise ValueError(f"on_inconsistent must be one of {ON_INCONSISTENT}, got {self.on_inconsistent!r}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {self.max_rounds}")

    @property
    def greedy_only(self) -> bool:
        return self.min_samples == 0


@dataclass(frozen=True)
class Sample:
    """One parsed model answer; a field is None when the answer did not give it (or gave it invalid)."""

    expression: str | None = None
    valence: float | None = None
    arousal: float | None = None
    aus: frozenset[str] | None = None
    description: str | Mapping[str, str] | None = None
    expression_probs: Mapping[str, float] | None = None
    """The model's own probability of its expression and of the alternatives it weighed (from token logprobs)."""
    aus_probability: float | None = None
    """The model's own probability of exactly this AU set (from token logprobs)."""

    def describe(self, level: str) -> str | None:
        """This sample's description of `level` (a per-level object, or the one free text)."""
        if isinstance(self.description, Mapping):
            text = self.description.get(level)
            return text if isinstance(text, str) and text.strip() else None
        return self.description if isinstance(self.description, str) and self.description.strip() else None


# -- Beta tails (exact for integer counts, no SciPy) -------------------------------------------------------------------
def prob_greater(a: int, b: int) -> float:
    """P(p_a > p_b) for vote counts a, b with p_a / (p_a + p_b) ~ Beta(a + 1, b + 1) (uniform prior).

    For integer parameters 1 - I_{1/2}(a + 1, b + 1) = P(Binomial(a + b + 1, 1/2) <= a): exact, no SciPy.
    """
    if a < 0 or b < 0:
        raise ValueError("vote counts must be >= 0")
    total = a + b + 1
    return math.fsum(math.comb(total, k) for k in range(a + 1)) / 2**total


def beta_cdf(x: float, a: int, b: int) -> float:
    """P(p <= x) for p ~ Beta(a + 1, b + 1): P(Binomial(a + b + 1, x) >= a + 1)."""
    n = a + b + 1
    return math.fsum(math.comb(n, k) * x**k * (1 - x) ** (n - k) for k in range(a + 1, n + 1))


def prob_between(low: float, high: float, a: int, b: int) -> float:
    """P(low < p < high) for p ~ Beta(a + 1, b + 1): how surely a share lies in a band."""
    return beta_cdf(high, a, b) - beta_cdf(low, a, b)


# -- the three levels --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpressionVote:
    label: str | None
    counts: dict[str, int]  # the votes (the greedy answer not included)
    greedy: str | None
    settled: bool
    posterior: float  # posterior mean share of the label, greedy answer included
    candidates: tuple[str, ...]  # every expression the greedy answer or a vote named, most supported first

    support: dict[str, int] = field(default_factory=dict)  # votes + the greedy answer's weight
    model: dict[str, float] = field(default_factory=dict)  # the model's own probabilities x `model_weight`
    model_weight: float = 0.0

    @property
    def uncertainty(self) -> float:
        return 1.0 - self.posterior

    def share(self, expression: str) -> float:
        """Posterior mean share of `expression`: Beta(1, 1) prior over the support, plus the model's own
        probabilities as `model_weight` votes where the server gave them."""
        total = sum(self.support.values()) + (self.model_weight if self.model else 0.0) + 2
        return (self.support.get(expression, 0) + self.model.get(expression, 0.0) + 1) / total


def expression_vote(
    votes: Iterable[str | None],
    confidence: float,
    greedy: str | None = None,
    greedy_weight: int = 2,
    model: Mapping[str, float] | None = None,
    model_weight: float = 0.0,
) -> ExpressionVote:
    """The expression: the greedy answer unless the votes decisively beat it; `model` (the greedy answer's own
    probabilities, counted `model_weight` votes) sharpens the posterior, not the choice."""
    counts = Counter(v for v in votes if v is not None)
    support = Counter(counts)
    if greedy is not None:
        support[greedy] += greedy_weight
    if not support:
        return ExpressionVote(None, {}, greedy, False, 0.0, (), {})
    weighted = {e: model_weight * p for e, p in (model or {}).items() if e in EXPRESSIONS and p > 0}
    # Ties break by EXPRESSIONS order, so the result never depends on arrival order.
    ranked = sorted(
        set(support) | set(weighted),
        key=lambda e: (-support[e] - weighted.get(e, 0.0), -counts[e], EXPRESSIONS.index(e)),
    )
    label = greedy
    leader = max(counts, key=lambda e: (counts[e], -EXPRESSIONS.index(e))) if counts else None
    if greedy is None:
        label = leader
    elif leader is not None and leader != greedy and prob_greater(counts[leader], support[greedy]) >= confidence:
        label = leader  # the votes decisively beat the greedy answer
    rival = max((support[e] for e in support if e != label), default=0)
    settled = prob_greater(support[label], rival) >= confidence
    candidates = (label, *(e for e in ranked if e != label))
    weight = model_weight if weighted else 0.0
    vote = ExpressionVote(label, dict(counts), greedy, settled, 0.0, candidates, dict(support), weighted, weight)
    return replace(vote, posterior=vote.share(label))


AU_PRIOR = 0.05
"""Pseudo-votes on each side of an AU's posterior share (see `au_vote`)."""


@dataclass(frozen=True)
class AUVote:
    active: frozenset[str]
    shares: dict[str, float]  # share of votes naming each AU
    decisive: tuple[str, ...]  # AUs whose votes are decisively above or below 1/2
    ambiguous: tuple[str, ...]  # AUs whose share is confidently near 1/2: the greedy answer decides them
    unsettled: tuple[str, ...]
    uncertainty: float  # the chance that some AU is wrong: 1 - prod of each label's share of the support
    votes: int
    support: dict[str, int] = field(default_factory=dict)  # votes naming each AU, + the greedy answer's weight
    total: int = 0  # votes + the greedy answer's weight

    @property
    def disagreement(self) -> float:
        """The mean share of the support against each AU's label (the set's instability; no prior)."""
        if not self.total:
            return 0.0
        against = [(self.total - yes if au in self.active else yes) / self.total for au, yes in self.support.items()]
        return sum(against) / len(against)

    def per_au(self, active: frozenset[str]) -> dict[str, float]:
        """Each AU's uncertainty given the final set `active`: the posterior share of the support against its
        label (a knowledge repair that flipped an AU gets the share that was for the old label)."""
        return {
            au: 1.0 - ((yes if au in active else self.total - yes) + AU_PRIOR) / (self.total + 2 * AU_PRIOR)
            for au, yes in self.support.items()
        }

    @property
    def settled(self) -> bool:
        return (self.votes > 0 or bool(self.shares)) and not self.unsettled


def au_vote(
    votes: Iterable[frozenset[str] | None],
    confidence: float,
    greedy: frozenset[str] | None = None,
    greedy_weight: int = 2,
    band: float = 0.3,
    names: Sequence[str] = AUS,
    model: float | None = None,
    model_weight: float = 0.0,
) -> AUVote:
    """Per AU: the votes' side when decisive at `confidence`, else the greedy answer's (else the majority).

    Uncertainty: the chance that some AU is wrong if each label were right in proportion to its posterior share of
    the support (votes and the greedy answer's weight; a sparse Beta(`AU_PRIOR`, `AU_PRIOR`) prior, since most AUs
    are clear-cut: under a uniform prior the floor of 17 unanimous AUs would outweigh one split AU, and the rows
    that needed more votes would look surer for it), mixed
    (as `model_weight` votes) with the model's own probability that the set is wrong where the server gave it
    (`model`: of exactly the greedy set; where the votes changed an AU, the model's probability of the final set is
    lower, by an unknown factor near 1: the votes override only AUs the model was torn on).
    "Wrong" is any of the 17 AUs: a weak AU detector is unsure of some AU on most faces."""
    sets = [v for v in votes if v is not None]
    m = len(sets)
    if m == 0 and greedy is None:
        return AUVote(frozenset(), {}, (), (), tuple(names), 1.0, 0)
    active, shares, decisive, ambiguous, unsettled, supports = set(), {}, [], [], [], {}
    right = 1.0
    w = greedy_weight if greedy is not None else 0
    for au in names:
        k = sum(au in s for s in sets)
        shares[au] = k / m if m else float(au in greedy)
        yes, no = prob_greater(k, m - k), prob_greater(m - k, k)
        if m and max(yes, no) >= confidence:
            present = yes > no
            decisive.append(au)
        else:
            present = au in greedy if greedy is not None else 2 * k > m
            if m and prob_between(0.5 - band, 0.5 + band, k, m - k) >= confidence:
                ambiguous.append(au)
            else:
                unsettled.append(au)
        if present:
            active.add(au)
        support = supports[au] = k + (w if greedy is not None and au in greedy else 0)
        agreeing = support if present else (m + w) - support
        right *= (agreeing + AU_PRIOR) / (m + w + 2 * AU_PRIOR)
    if greedy is not None and m == 0:
        unsettled = []  # nothing to vote with: the greedy answer alone is the label
    uncertainty = 1.0 - right
    if model is not None and greedy is not None:
        uncertainty = (uncertainty * (m + w) + (1.0 - model) * model_weight) / (m + w + model_weight)
    return AUVote(
        frozenset(active),
        shares,
        tuple(decisive),
        tuple(ambiguous),
        tuple(unsettled),
        uncertainty,
        m,
        supports,
        m + w,
    )


@dataclass(frozen=True)
class VAVote:
    valence: float | None
    arousal: float | None
    standard_error: float
    settled: bool
    uncertainty: float
    votes: int


def va_vote(
    pairs: Iterable[tuple[float | None, float | None]],
    tolerance: float,
    greedy: tuple[float, float] | None = None,
    greedy_weight: int = 2,
    prior: float = 0.1,
) -> VAVote:
    """Weighted mean of the votes and the greedy answer; settled once the votes' standard error is <= `tolerance`.

    Uncertainty: sqrt of the posterior variance of one vote (the votes' variance, shrunk toward `prior`**2 as if
    two more votes had it) plus half the squared distance of the greedy answer from the votes' mean.
    """
    valid = [(v, a) for v, a in pairs if v is not None and a is not None]
    m = len(valid)
    if m == 0 and greedy is None:
        return VAVote(None, None, math.inf, False, 1.0, 0)
    vs, as_ = [v for v, _ in valid], [a for _, a in valid]
    w = greedy_weight if greedy is not None else 0
    gv, ga = greedy if greedy is not None else (0.0, 0.0)
    valence = (sum(vs) + w * gv) / (m + w)
    arousal = (sum(as_) + w * ga) / (m + w)
    var = (_ss(vs) + _ss(as_)) / 2  # pooled sum of squares about each dimension's mean
    posterior_var = (var + 2 * prior**2) / (max(m - 1, 0) + 2)
    gap = 0.0
    if greedy is not None and m:
        gap = ((gv - sum(vs) / m) ** 2 + (ga - sum(as_) / m) ** 2) / 2
    se = math.sqrt(max(_sd(vs), _sd(as_)) ** 2 / m) if m > 1 else math.inf
    settled = se <= tolerance or (m == 0 and greedy is not None)
    return VAVote(_clip(valence), _clip(arousal), se, settled, math.sqrt(posterior_var + gap), m)


# -- aggregation and the schedule ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Aggregate:
    levels: tuple[str, ...]
    samples: int  # votes drawn, parseable or not (the greedy answer not included)
    greedy: Sample | None
    expression: ExpressionVote | None
    va: VAVote | None
    aus: AUVote | None

    @property
    def unsettled(self) -> tuple[str, ...]:
        pending = []
        if self.expression is not None and not self.expression.settled:
            pending.append(EXPRESSION)
        if self.va is not None and not self.va.settled:
            pending.append(VALENCE_AROUSAL)
        if self.aus is not None and not self.aus.settled:
            pending.append(AU_LEVEL)
        return tuple(pending)


def aggregate(
    samples: Sequence[Sample | None], levels: Iterable[str], config: SVUAMCConfig, greedy: Sample | None = None
) -> Aggregate:
    """Vote on each requested level; a None sample (bad JSON) counts as drawn but votes on nothing."""
    levels = tuple(levels)
    valid = [s for s in samples if s is not None]
    w, k = config.greedy_weight, config.logprob_weight
    g = greedy or Sample()
    g_va = (g.valence, g.arousal) if g.valence is not None and g.arousal is not None else None
    return Aggregate(
        levels,
        len(samples),
        greedy,
        expression_vote((s.expression for s in valid), config.confidence, g.expression, w, g.expression_probs, k)
        if EXPRESSION in levels
        else None,
        va_vote(((s.valence, s.arousal) for s in valid), config.va_tolerance, g_va, w, config.va_prior)
        if VALENCE_AROUSAL in levels
        else None,
        au_vote(
            (s.aus for s in valid),
            config.au_confidence or config.confidence,
            g.aus,
            w,
            config.ambiguous_band,
            model=g.aus_probability,
            model_weight=k,
        )
        if AU_LEVEL in levels
        else None,
    )


def next_round(agg: Aggregate, config: SVUAMCConfig, rounds: int = 0, overhead: float = 0.0) -> int:
    """Votes to draw in the next sampling request (0: stop).

    `rounds` is the number of sampling requests made so far; `overhead` what one more request costs before its
    choices (the image and prompt it re-sends), in units of one vote's completion (`request_overhead`).
    """
    if not agg.levels or config.greedy_only:
        return 0
    if rounds == 0:
        return config.min_samples
    remaining = config.max_samples - agg.samples
    if rounds >= config.max_rounds or remaining <= 0 or not agg.unsettled:
        return 0
    return min(follow_up(agg, config, overhead), remaining)


def follow_up(agg: Aggregate, config: SVUAMCConfig, overhead: float = 0.0) -> int:
    """The size of a follow-up: what the shares say is needed, and at least half the request's overhead in votes
    (a request that re-sends a 1,500-token prompt for two 30-token votes buys little)."""
    if config.round_samples is not None:
        return config.round_samples
    return max(projected_samples(agg, config) - agg.samples, math.ceil(overhead / 2), 1)


def request_overhead(prompt_cost: float, completion_cost: float, choices: int) -> float:
    """A request's prompt cost in units of one of its choices' completion cost (0 when nothing is known)."""
    if choices <= 0 or completion_cost <= 0:
        return 0.0
    return prompt_cost / (completion_cost / choices)


def projected_samples(agg: Aggregate, config: SVUAMCConfig) -> int:
    """Total votes the unsettled levels would need if their current shares held (capped at `max_samples`)."""
    cap = config.max_samples
    needed = agg.samples
    w = config.greedy_weight if agg.greedy is not None else 0
    if agg.expression is not None and not agg.expression.settled:
        support = Counter(agg.expression.counts)
        if agg.expression.greedy is not None:
            support[agg.expression.greedy] += w
        ranked = [*sorted(support.values(), reverse=True), 0, 0]
        needed = max(needed, _votes_needed(ranked[0], ranked[1], config.confidence, cap + w) - w)
    if agg.aus is not None and agg.aus.votes:
        m = agg.aus.votes
        for au in agg.aus.unsettled:
            k = round(agg.aus.shares[au] * m)
            lead, behind = max(k, m - k), min(k, m - k)
            needed = max(needed, _votes_needed(lead, behind, config.au_confidence or config.confidence, cap))
    if agg.va is not None and agg.va.votes > 1 and not agg.va.settled:
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


# -- acceptance --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelResult:
    value: Any  # expression name | (valence, arousal) | frozenset of active AUs
    uncertainty: float
    description: str | None
    verified: bool = False  # changed by knowledge (a fallback candidate) or by the votes beating the greedy answer
    decided: bool = True  # settled by sampling (the stopping rule was met)
    repair_odds: float = 1.0  # posterior odds of the AUs a knowledge repair changed (1: none)
    per_au: Mapping[str, float] | None = None  # the AU level: each AU's own uncertainty (`AUVote.per_au`)


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
    human: Mapping[str, Any] | None = None,
    consistency: ConsistencyFn | None = None,
) -> Decision:
    """Final labels, uncertainties and descriptions for the requested levels, and accept or reject.

    `human` holds the human labels (`expression` name, `valence`, `arousal`, `aus` as a {name: 0/1} mapping of the
    coded AUs).
    """
    human = dict(human or {})
    results, missing = _labels(agg)
    if missing:
        return Decision("rejected", f"no valid answer for {', '.join(missing)} in {agg.samples} samples", {})

    reason, score, kept = "", 1.0, set(results)
    if consistency is not None and not _passes(consistency(**_merged(human, {})).score, config):
        reason = "human labels contradict each other: knowledge check skipped"
    elif consistency is not None:
        check = consistency(**_merged(human, results))
        score = check.score
        issues = "; ".join(check.issues) or "contradiction"
        if check.score < 1.0 and config.on_inconsistent == "fallback":
            before = results
            results, score = _most_consistent(agg, results, human, config, consistency, check.score)
            changed = [level for level, r in results.items() if r.value != before[level].value]
            if changed:
                reason = f"knowledge fallback ({', '.join(changed)}) after: {issues}"
        if not _passes(score, config):
            if config.on_inconsistent == "keep":
                reason = f"kept despite knowledge issues (score {score:.2f}): {issues}"
                score = 1.0  # "keep" lets the agreement of samples stand: no knowledge discount either
            else:
                kept = _without_a_contradicting_level(results, human, config, consistency)
                why = f"inconsistent with emotion knowledge (score {score:.2f}): {issues}"
                if not kept:
                    return Decision("rejected", why, {})
                reason = f"{', '.join(level for level in results if level not in kept)} left missing: {why}"
        elif not reason and check.issues:
            reason = issues
    # Uncertainties are computed on every voted level, given up or not: a level the others disagree with is news
    # about them too.
    voted = results
    results = _with_knowledge(results, human, score, config)
    uncertain = {
        level: results[level].uncertainty
        for level in kept
        if results[level].uncertainty > config.max_uncertainty.get(level, 1.0)
    }
    if uncertain:
        why = "; ".join(
            f"{level} uncertain after {agg.samples} samples: {u:.2f} > {config.max_uncertainty.get(level, 1.0)}"
            for level, u in uncertain.items()
        )
        kept -= set(uncertain)
        if not kept:
            return Decision("rejected", why, {})
        reason = "; ".join(part for part in (reason, f"{', '.join(uncertain)} left missing: {why}") if part)
    results = {level: r for level, r in _with_instability(results, voted, agg).items() if level in kept}
    valid = [s for s in samples if s is not None]
    described = {
        level: replace(
            r,
            description=_description(level, r.value, agg.greedy, valid),
            per_au=agg.aus.per_au(r.value) if level == AU_LEVEL and agg.aus is not None else None,
        )
        for level, r in results.items()
    }
    return Decision("accepted", reason, described)


def _labels(agg: Aggregate) -> tuple[dict[str, LevelResult], list[str]]:
    results: dict[str, LevelResult] = {}
    missing = []
    if agg.expression is not None:
        vote = agg.expression
        if vote.label is None:
            missing.append(EXPRESSION)
        else:
            overridden = vote.greedy is not None and vote.label != vote.greedy
            results[EXPRESSION] = LevelResult(vote.label, vote.uncertainty, None, overridden, vote.settled)
    if agg.va is not None:
        if agg.va.valence is None:
            missing.append(VALENCE_AROUSAL)
        else:
            va = agg.va
            results[VALENCE_AROUSAL] = LevelResult((va.valence, va.arousal), va.uncertainty, None, False, va.settled)
    if agg.aus is not None:
        if not agg.aus.shares:
            missing.append(AU_LEVEL)
        else:
            results[AU_LEVEL] = LevelResult(agg.aus.active, agg.aus.uncertainty, None, False, agg.aus.settled)
    return results, missing


def _without_a_contradicting_level(
    results: dict[str, LevelResult], human: Mapping[str, Any], config: SVUAMCConfig, consistency: ConsistencyFn
) -> set[str]:
    """The levels kept when one generated level (expression first, then valence/arousal, then AUs) is given up so
    that the rest passes the knowledge check; empty when none does: the row is rejected."""
    for level in (EXPRESSION, VALENCE_AROUSAL, AU_LEVEL):
        if level in results and len(results) > 1:
            rest = {k: r for k, r in results.items() if k != level}
            if _passes(consistency(**_merged(human, rest)).score, config):
                return set(rest)
    return set()


def _with_knowledge(
    results: dict[str, LevelResult], human: Mapping[str, Any], score: float, config: SVUAMCConfig
) -> dict[str, LevelResult]:
    """Uncertainties with what knowledge says about the label set: the expression's posterior is discounted by the
    knowledge score and by how far the face's valence/arousal (human or generated) lies from the expression's
    circumplex anchor; the valence/arousal spread is widened by the same distance; the AUs' agreement is discounted
    by their affinity to the face's expression's prototypes. Levels of one face that do not agree with each other
    are where a model's confident mistakes show."""
    labels = _merged(human, results)
    expression, valence, arousal = labels["expression"], labels["valence"], labels["arousal"]
    if expression not in CIRCUMPLEX or valence is None or arousal is None:
        distance = 0.0
    else:
        anchor_v, anchor_a = CIRCUMPLEX[expression]
        distance = math.hypot(valence - anchor_v, arousal - anchor_a)
    out = dict(results)
    if EXPRESSION in out:
        r = out[EXPRESSION]
        agreement = min(score, 1.0) * math.exp(-(distance**2) / (2 * config.anchor_spread**2))
        out[EXPRESSION] = replace(r, uncertainty=1.0 - (1.0 - r.uncertainty) * agreement)
    if VALENCE_AROUSAL in out and expression in CIRCUMPLEX:
        r = out[VALENCE_AROUSAL]
        out[VALENCE_AROUSAL] = replace(r, uncertainty=math.sqrt(r.uncertainty**2 + (distance / 2) ** 2))
    if AU_LEVEL in out and expression is not None:
        r = out[AU_LEVEL]
        affinity = expression_au_affinity(expression, r.value)
        out[AU_LEVEL] = replace(r, uncertainty=1.0 - (1.0 - r.uncertainty) * affinity)
    return out


def _with_instability(
    results: dict[str, LevelResult], voted: Mapping[str, LevelResult], agg: Aggregate
) -> dict[str, LevelResult]:
    """Uncertainties that also carry the instability of the same face at its other generated levels.

    A face a model is unsure of at one level (split votes on the AUs, spread valence/arousal) is a face where its
    unanimous expression is more often a confident mistake. Each generated level's stability: the expression's
    posterior share (after knowledge), exp(-2 x the valence/arousal vote spread), (1 - the AUs' disagreement)**2; a
    level's uncertainty is then 1 - (1 - its own) x the product of the others' x the odds of a knowledge repair
    (valence/arousal, in its own units: + 0.2 x (1 - that product)). Used for ranking, after acceptance:
    `max_uncertainty` sees each level's own.
    """
    stability = {}
    if EXPRESSION in results:
        stability[EXPRESSION] = 1.0 - results[EXPRESSION].uncertainty
    if VALENCE_AROUSAL in voted:
        stability[VALENCE_AROUSAL] = math.exp(-2.0 * voted[VALENCE_AROUSAL].uncertainty)
    if AU_LEVEL in voted and agg.aus is not None:
        stability[AU_LEVEL] = (1.0 - agg.aus.disagreement) ** 2
    out = {}
    for level, r in results.items():
        others = math.prod(v for k, v in stability.items() if k != level)
        if level == VALENCE_AROUSAL:
            out[level] = replace(r, uncertainty=r.uncertainty + 0.2 * (1.0 - others))
        else:
            out[level] = replace(r, uncertainty=1.0 - (1.0 - r.uncertainty) * others * r.repair_odds)
    return out


def _passes(score: float, config: SVUAMCConfig) -> bool:
    return score > config.consistency_threshold


def _most_consistent(
    agg: Aggregate,
    results: dict[str, LevelResult],
    human: Mapping[str, Any],
    config: SVUAMCConfig,
    consistency: ConsistencyFn,
    score: float,
) -> tuple[dict[str, LevelResult], float]:
    """The passing candidate label set with the highest posterior x knowledge score (the current set if none).

    Expression candidates: the greedy answer and every voted expression, each with its posterior share. A set that
    fails the check gets its generated AUs repaired, each set to the value that raises the score most: the AUs the
    votes left undecided, then any AU (human labels outrank the agreement of samples, and models are weak AU
    detectors). A repair costs the posterior odds of each changed AU, (votes for the new value + 1) / (votes for
    the old + 1): rewriting AUs the votes agreed on to excuse a generated expression is rarely the best set, and
    when it is, both levels carry that cost in their reported uncertainty (not in `max_uncertainty`: the votes of a
    weak AU detector are weak evidence against knowledge).
    """

    def value(trial: Mapping[str, LevelResult], trial_score: float) -> float:
        share = 1.0 - trial[EXPRESSION].uncertainty if EXPRESSION in trial else 1.0
        odds = trial[AU_LEVEL].repair_odds if AU_LEVEL in trial else 1.0
        return share * odds * trial_score

    best, best_score = results, score
    best_value = value(results, score)
    expressions = agg.expression.candidates if EXPRESSION in results else (None,)
    undecided = [au for au in AUS if agg.aus is not None and au not in agg.aus.decisive]
    for expression in expressions:
        trial = dict(results)
        if expression is not None and expression != results[EXPRESSION].value:
            trial[EXPRESSION] = LevelResult(expression, 1.0 - agg.expression.share(expression), None, True, False)
        trial_score = consistency(**_merged(human, trial)).score
        if AU_LEVEL in trial and not _passes(trial_score, config):
            for flexible in (undecided, AUS):  # models are weak AU detectors: their AUs yield first
                trial[AU_LEVEL], trial_score = _consistent_aus(trial, flexible, human, consistency, trial_score)
            odds = _repair_odds(agg, results[AU_LEVEL].value, trial[AU_LEVEL].value)
            trial = {lvl: replace(r, repair_odds=odds) if lvl != VALENCE_AROUSAL else r for lvl, r in trial.items()}
        if not _passes(trial_score, config):
            continue
        if value(trial, trial_score) > best_value + 1e-9 or not _passes(best_score, config):
            best, best_score, best_value = trial, trial_score, value(trial, trial_score)
    return best, best_score


def _repair_odds(agg: Aggregate, before: frozenset[str], after: frozenset[str]) -> float:
    """The posterior odds of the AUs a repair changed: prod of (support of the new value + 1) / (of the old + 1)."""
    if agg.aus is None:
        return 1.0
    odds = 1.0
    for au in before ^ after:
        yes = agg.aus.support.get(au, 0)
        no = agg.aus.total - yes
        new, old = (yes, no) if au in after else (no, yes)
        odds *= (new + 1) / (old + 1)
    return odds


def _consistent_aus(
    trial: dict[str, LevelResult],
    flexible: Sequence[str],
    human: Mapping[str, Any],
    consistency: ConsistencyFn,
    score: float,
) -> tuple[LevelResult, float]:
    current = trial[AU_LEVEL]
    active = set(current.value)
    for _ in range(2):  # two passes of coordinate ascent are enough for the knowledge rules' few AUs
        for au in flexible:
            flipped = active ^ {au}
            s = consistency(**_merged(human, {**trial, AU_LEVEL: replace(current, value=frozenset(flipped))})).score
            if s > score:
                active, score = flipped, s
    changed = frozenset(active) != current.value
    return replace(current, value=frozenset(active), verified=current.verified or changed), score


def _merged(human: Mapping[str, Any], results: Mapping[str, LevelResult]) -> dict[str, Any]:
    labels = {k: human.get(k) for k in ("expression", "valence", "arousal", "aus")}
    if EXPRESSION in results:
        labels["expression"] = results[EXPRESSION].value
    if VALENCE_AROUSAL in results:
        labels["valence"], labels["arousal"] = results[VALENCE_AROUSAL].value
    if AU_LEVEL in results:
        labels["aus"] = sorted(results[AU_LEVEL].value, key=AUS.index)
    return labels


def agrees(sample: Sample, level: str, value: Any) -> bool:
    """Whether `sample` gives `level` the final label `value` (valence/arousal: within 0.3 in L1)."""
    if level == EXPRESSION:
        return sample.expression == value
    if level == AU_LEVEL:
        return sample.aus is not None and sample.aus == value
    if sample.valence is None or sample.arousal is None:
        return False
    return abs(sample.valence - value[0]) + abs(sample.arousal - value[1]) <= 0.3


def _description(level: str, value: Any, greedy: Sample | None, samples: Sequence[Sample]) -> str | None:
    """The description of the answer closest to the final label, the greedy answer first among equals; never one
    of an expression the final label contradicts."""
    pool = [s for s in ([greedy] if greedy is not None else []) + list(samples) if s.describe(level)]
    if not pool:
        return None

    def distance(s: Sample) -> float:
        if level == EXPRESSION:
            return 0.0 if s.expression == value else math.inf
        if level == VALENCE_AROUSAL:
            if s.valence is None or s.arousal is None:
                return math.inf
            return abs(s.valence - value[0]) + abs(s.arousal - value[1])
        return math.inf if s.aus is None else float(len(s.aus ^ value))

    best = min(pool, key=distance)  # first of the closest: deterministic
    return best.describe(level) if distance(best) < math.inf else None


def _ss(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values)


def _sd(values: Sequence[float]) -> float:
    return math.sqrt(_ss(values) / (len(values) - 1)) if len(values) > 1 else 0.0


def _clip(x: float) -> float:
    return min(1.0, max(-1.0, x))
