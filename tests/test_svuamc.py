"""The pure SV-UAMC algorithm: stopping rules, aggregation, uncertainty, verification and acceptance."""

from __future__ import annotations

import math
import random

import pytest

from seke_hf.annotate import prompts, svuamc
from seke_hf.annotate.svuamc import AU_LEVEL, EXPRESSION, VALENCE_AROUSAL, Sample, SVUAMCConfig
from seke_hf.knowledge import consistency
from seke_hf.schema import AUS

CONFIG = SVUAMCConfig()
LENIENT = SVUAMCConfig(max_uncertainty={EXPRESSION: 1.0})  # never rejects for disagreement alone
ALL = (EXPRESSION, VALENCE_AROUSAL, AU_LEVEL)


def test_prob_greater_is_the_beta_tail():
    assert svuamc.prob_greater(0, 0) == pytest.approx(0.5)
    assert svuamc.prob_greater(4, 0) == pytest.approx(1 - 1 / 32)  # Beta(5, 1): 1 - 0.5**5
    assert svuamc.prob_greater(3, 1) == pytest.approx(1 - 6 / 32)
    for a, b in [(5, 2), (9, 7), (0, 3)]:
        assert svuamc.prob_greater(a, b) + svuamc.prob_greater(b, a) == pytest.approx(1.0)
    assert svuamc.prob_greater(8, 2) > svuamc.prob_greater(7, 3) > svuamc.prob_greater(6, 4)


def test_expression_stops_on_unanimity_not_on_a_split():
    assert svuamc.expression_vote(["happiness"] * 4, 0.95).decided
    split = svuamc.expression_vote(["happiness"] * 3 + ["surprise"], 0.95)
    assert not split.decided and split.label == "happiness"
    assert split.candidates == ("happiness", "surprise")
    assert split.uncertainty == pytest.approx(0.25)
    # More agreement decides eventually; an even split never does.
    assert svuamc.expression_vote(["fear"] * 9 + ["surprise"], 0.95).decided
    assert not svuamc.expression_vote(["fear"] * 8 + ["surprise"] * 8, 0.95).decided


def test_expression_ties_break_by_label_order_and_invalid_votes_do_not_count():
    tie = svuamc.expression_vote(["surprise", "fear", None, "surprise", "fear"], 0.95)
    assert tie.label == "fear"  # EXPRESSIONS order: fear before surprise
    assert sum(tie.counts.values()) == 4
    empty = svuamc.expression_vote([None, None], 0.95)
    assert empty.label is None and not empty.decided and empty.uncertainty == 1.0


def test_each_au_must_be_decisively_above_or_below_half():
    votes = [frozenset({"AU6", "AU12"})] * 4
    unanimous = svuamc.au_vote(votes, 0.95)
    assert unanimous.decided and unanimous.active == {"AU6", "AU12"} and unanimous.uncertainty == 0.0
    contested = svuamc.au_vote(
        [*votes[:2], frozenset({"AU6", "AU12", "AU25"}), frozenset({"AU6", "AU12", "AU25"})], 0.95
    )
    assert contested.undecided == ("AU25",)
    assert contested.shares["AU25"] == 0.5 and "AU25" not in contested.active  # a tie is not a majority
    assert contested.uncertainty == pytest.approx(1 / len(AUS))  # one AU at maximal binary entropy


def test_valence_arousal_decided_by_standard_error():
    tight = svuamc.va_vote([(0.5, 0.3), (0.52, 0.31), (0.49, 0.29), (0.51, 0.3)], 0.08)
    assert tight.decided and tight.valence == pytest.approx(0.505) and tight.uncertainty < 0.02
    spread = svuamc.va_vote([(0.8, 0.3), (-0.4, 0.1), (0.2, -0.5), (0.6, 0.6)], 0.08)
    assert not spread.decided and spread.uncertainty > 0.3
    assert not svuamc.va_vote([(0.1, 0.1)], 0.08).decided  # one sample has no standard error


def test_sampling_schedule_stops_when_decided_or_at_the_budget():
    config = SVUAMCConfig(min_samples=4, max_samples=10, round_samples=3)
    easy = [Sample("happiness", 0.7, 0.4, frozenset({"AU6", "AU12"}))] * 4
    agg = svuamc.aggregate([], ALL, config)
    assert svuamc.next_round(agg, config) == 4
    assert svuamc.next_round(svuamc.aggregate(easy, ALL, config), config) == 0
    hard = [Sample(e, 0.1 * i, 0.0, frozenset()) for i, e in enumerate(["fear", "surprise"] * 2)]
    assert svuamc.next_round(svuamc.aggregate(hard, ALL, config), config) == 3
    assert svuamc.next_round(svuamc.aggregate(hard * 2, ALL, config), config) == 2  # 8 drawn, 10 allowed
    assert svuamc.next_round(svuamc.aggregate(hard * 3, ALL, config), config) == 0
    assert svuamc.next_round(svuamc.aggregate(easy, (), config), config) == 0  # nothing asked


def test_projected_rounds_draw_what_the_lead_needs_in_one_request():
    lead = svuamc.aggregate([Sample("anger")] * 3 + [Sample("disgust")], (EXPRESSION,), CONFIG)
    k = svuamc.next_round(lead, CONFIG)
    assert 4 < k < 12
    total = 4 + k  # at the same 3:1 share, that many votes pass the rule, one fewer does not
    assert svuamc.prob_greater(3 * total // 4, -(-total // 4)) >= CONFIG.confidence
    assert svuamc.prob_greater(3 * (total - 1) // 4, -(-(total - 1) // 4)) < CONFIG.confidence
    tie = svuamc.aggregate([Sample("anger"), Sample("disgust")] * 2, (EXPRESSION,), CONFIG)
    assert svuamc.next_round(tie, CONFIG) == 12  # no lead to project: straight to the budget
    noisy_va = svuamc.aggregate(
        [Sample(valence=v, arousal=0.0) for v in (0.1, 0.5, -0.2, 0.3)], (VALENCE_AROUSAL,), CONFIG
    )
    sd = svuamc._sd([0.1, 0.5, -0.2, 0.3])
    assert 4 + svuamc.next_round(noisy_va, CONFIG) == min(16, math.ceil((sd / CONFIG.va_tolerance) ** 2))


def test_adaptive_sampling_spends_on_hard_examples_only():
    """Over simulated vote streams, easy examples stop at min_samples and hard ones use the budget."""
    rng = random.Random(0)

    def drawn(p_top: float) -> int:
        samples: list[Sample | None] = []
        agg = svuamc.aggregate(samples, (EXPRESSION,), CONFIG)
        while (k := svuamc.next_round(agg, CONFIG)) > 0:
            samples += [Sample("happiness" if rng.random() < p_top else "surprise") for _ in range(k)]
            agg = svuamc.aggregate(samples, (EXPRESSION,), CONFIG)
        return len(samples)

    easy = [drawn(0.99) for _ in range(200)]
    hard = [drawn(0.55) for _ in range(200)]
    assert sum(easy) / len(easy) < 5
    assert sum(hard) / len(hard) > 12


def test_bad_choices_are_drawn_but_do_not_vote():
    agg = svuamc.aggregate([None, Sample("anger"), None, Sample("anger")], (EXPRESSION,), CONFIG)
    assert agg.samples == 4 and sum(agg.expression.counts.values()) == 2


def test_verification_settles_only_among_candidates():
    samples = [Sample("fear", description="wide eyes")] * 8 + [Sample("surprise", description="raised brows")] * 8
    agg = svuamc.aggregate(samples, (EXPRESSION,), CONFIG)
    contest = svuamc.contest(agg, CONFIG)
    assert set(contest.expressions) == {"fear", "surprise"} and not contest.aus
    decision = svuamc.decide(samples, agg, LENIENT, verdict=Sample("surprise"), contested=contest)
    assert decision.status == "accepted"
    result = decision.levels[EXPRESSION]
    assert result.value == "surprise" and result.verified and result.description == "raised brows"
    outside = svuamc.decide(samples, agg, LENIENT, verdict=Sample("anger"), contested=contest)
    assert outside.levels[EXPRESSION].value == "fear"  # the majority (tie -> label order) stands
    assert not svuamc.contest(agg, SVUAMCConfig(verify=False))


def test_contested_aus_take_the_verdict_and_keep_their_uncertainty():
    samples = [Sample(aus=frozenset({"AU12", "AU25"}))] * 3 + [Sample(aus=frozenset({"AU12"}))] * 3
    agg = svuamc.aggregate(samples, (AU_LEVEL,), CONFIG)
    contest = svuamc.contest(agg, CONFIG)
    assert contest.aus == ("AU25",)
    decision = svuamc.decide(samples, agg, CONFIG, verdict=Sample(aus=frozenset({"AU25"})), contested=contest)
    assert decision.status == "accepted"
    assert decision.levels[AU_LEVEL].value == {"AU12", "AU25"}
    assert decision.levels[AU_LEVEL].uncertainty == pytest.approx(1 / len(AUS))


def test_knowledge_picks_the_consistent_candidate_and_rejects_contested_contradictions():
    human = {"aus": {"AU6": 1, "AU12": 1, "AU4": 0, "AU15": 0}}
    samples = [Sample("happiness")] * 7 + [Sample("sadness")] * 9
    agg = svuamc.aggregate(samples, (EXPRESSION,), LENIENT)
    contest = svuamc.contest(agg, LENIENT)
    decision = svuamc.decide(samples, agg, LENIENT, contested=contest, human=human, consistency=consistency)
    assert decision.status == "accepted" and decision.levels[EXPRESSION].value == "happiness"
    assert decision.levels[EXPRESSION].verified

    # Contested and contradicting the human AUs whatever the candidate: rejected, with the reason.
    angry = {"aus": {"AU4": 1, "AU5": 1, "AU7": 1, "AU23": 1, "AU12": 0, "AU14": 0}}
    samples = [Sample("happiness")] * 9 + [Sample("contempt")] * 7
    agg = svuamc.aggregate(samples, (EXPRESSION,), LENIENT)
    contest = svuamc.contest(agg, LENIENT)
    rejected = svuamc.decide(samples, agg, LENIENT, contested=contest, human=angry, consistency=consistency)
    assert rejected.status == "rejected" and "inconsistent" in rejected.reason and "undecided" in rejected.reason
    assert not rejected.levels


def test_a_decided_answer_contradicting_knowledge_is_kept_unless_asked_otherwise():
    human = {"aus": {"AU6": 1, "AU12": 1, "AU4": 0, "AU15": 0}}
    sure = [Sample("sadness")] * 4
    agg = svuamc.aggregate(sure, (EXPRESSION,), CONFIG)
    kept = svuamc.decide(sure, agg, CONFIG, human=human, consistency=consistency)
    assert kept.status == "accepted" and "kept despite knowledge issues" in kept.reason
    strict = SVUAMCConfig(reject_inconsistent="always")
    assert svuamc.decide(sure, agg, strict, human=human, consistency=consistency).status == "rejected"
    # Human labels alone are never held against the example.
    assert svuamc.decide([], svuamc.aggregate([], (), CONFIG), CONFIG, human=human, consistency=consistency).status == (
        "accepted"
    )


def test_a_level_left_too_uncertain_rejects_the_example():
    votes = ["anger", "disgust", "fear", "sadness", "contempt", "neutral", "anger", "disgust"] * 2
    samples = [Sample(e) for e in votes]
    agg = svuamc.aggregate(samples, (EXPRESSION,), CONFIG)
    decision = svuamc.decide(samples, agg, CONFIG)
    assert decision.status == "rejected" and "expression uncertain" in decision.reason
    assert svuamc.decide(samples, agg, LENIENT).status == "accepted"


def test_no_valid_answer_rejects():
    agg = svuamc.aggregate([None] * 16, (VALENCE_AROUSAL,), CONFIG)
    decision = svuamc.decide([None] * 16, agg, CONFIG)
    assert decision.status == "rejected" and "no valid answer" in decision.reason


def test_tolerant_parsing():
    s = prompts.parse_sample(
        'Sure:\n```json\n{"Expression": "Happiness", "valence": "0.6", "arousal": 2, '
        '"action_units": ["AU06", "au 12", 25, "AU99", "smile"], "description": "smiling"}\n```'
    )
    assert s.expression == "happiness" and s.valence == 0.6 and s.arousal is None  # out of range: missing
    assert s.aus == {"AU6", "AU12", "AU25"} and s.description == "smiling"
    assert prompts.parse_sample('{"expression": "happiness", "valence": 0.') is None  # truncated
    assert prompts.parse_sample("I think the person is happy.") is None
    assert prompts.parse_sample('{"expression": "joy"}').expression is None  # never coerced
    restricted = prompts.parse_sample('{"expression": "anger"}', expressions=("fear", "surprise"))
    assert restricted.expression is None


def test_schema_asks_only_for_the_requested_levels():
    fmt = prompts.response_format((AU_LEVEL,), aus=("AU25", "AU26"))
    schema = fmt["json_schema"]["schema"]
    assert set(schema["properties"]) == {"action_units", "descriptions"}
    assert schema["properties"]["descriptions"]["required"] == ["expression", "valence_arousal", "aus"]
    assert schema["required"] == list(schema["properties"]) and schema["additionalProperties"] is False
    assert schema["properties"]["action_units"]["items"]["enum"] == ["AU25", "AU26"]
    lines = prompts.known_label_lines("happiness", 0.624, 0.31, {"AU6": 1, "AU12": 1, "AU4": 0})
    assert lines == [
        "expression: happiness",
        "valence: 0.62",
        "arousal: 0.31",
        "action units present: AU6, AU12",
        "action units absent: AU4",
    ]


def test_conflicting_human_labels_do_not_reject_what_was_generated():
    human = {"expression": "happiness", "aus": {"AU4": 1, "AU12": 0, "AU14": 0}}  # contradict each other
    samples = [Sample(valence=v, arousal=0.2) for v in (0.9, -0.3, 0.5, 0.1)] * 4  # contested valence
    agg = svuamc.aggregate(samples, (VALENCE_AROUSAL,), LENIENT)
    assert not agg.va.decided
    decision = svuamc.decide(samples, agg, LENIENT, human=human, consistency=consistency)
    assert decision.status == "accepted" and "human labels contradict" in decision.reason
