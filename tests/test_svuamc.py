"""The pure SV-UAMC algorithm: schedule, stopping rules, aggregation, posterior uncertainty and acceptance."""

from __future__ import annotations

import random

import pytest

from seke_hf.annotate import prompts, svuamc
from seke_hf.annotate.svuamc import AU_LEVEL, EXPRESSION, VALENCE_AROUSAL, Sample, SVUAMCConfig
from seke_hf.knowledge import consistency

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


def test_beta_band_probabilities():
    assert svuamc.prob_between(0.0, 1.0, 3, 5) == pytest.approx(1.0)
    assert svuamc.beta_cdf(0.5, 4, 4) == pytest.approx(0.5)
    assert svuamc.prob_between(0.2, 0.8, 2, 2) > svuamc.prob_between(0.2, 0.8, 4, 0)  # 2 of 4 sits in the middle


def test_the_greedy_answer_stands_unless_the_votes_decisively_beat_it():
    split = svuamc.expression_vote(["surprise"] * 3 + ["fear"], 0.95, greedy="fear")
    assert split.label == "fear" and not split.settled  # 3 votes to 1 + 2 for the greedy answer: not decisive
    assert split.candidates[:2] == ("fear", "surprise")
    beaten = svuamc.expression_vote(["surprise"] * 9, 0.95, greedy="fear")
    assert beaten.label == "surprise" and beaten.settled
    assert svuamc.expression_vote(["fear"] * 8 + ["surprise"] * 8, 0.95).label == "fear"  # ties: label order
    empty = svuamc.expression_vote([None, None], 0.95)
    assert empty.label is None and not empty.settled and empty.uncertainty == 1.0


def test_uncertainty_is_a_posterior_that_orders_rows_that_stopped_early():
    four = svuamc.expression_vote(["happiness"] * 4, 0.95, greedy="happiness")
    twelve = svuamc.expression_vote(["happiness"] * 12, 0.95, greedy="happiness")
    split = svuamc.expression_vote(["happiness"] * 3 + ["surprise"], 0.95, greedy="happiness")
    assert four.settled and twelve.settled
    assert 0 < twelve.uncertainty < four.uncertainty < split.uncertainty  # four unanimous votes are not certainty
    assert four.uncertainty == pytest.approx(1 - 7 / 8)  # (4 + 2 + 1) / (6 + 2)
    aus = [frozenset({"AU6", "AU12"})] * 4
    unanimous = svuamc.au_vote(aus, 0.8, greedy=frozenset({"AU6", "AU12"}))
    assert unanimous.settled and 0 < unanimous.uncertainty < 0.2


def test_an_ambivalent_au_settles_on_the_greedy_answer_and_is_flagged():
    votes = [frozenset({"AU6", "AU12", "AU25"})] * 2 + [frozenset({"AU6", "AU12"})] * 2
    vote = svuamc.au_vote(votes, 0.8, greedy=frozenset({"AU6", "AU12", "AU25"}))
    assert vote.ambiguous == ("AU25",) and vote.settled  # share 1/2: more votes would only confirm it
    assert vote.active == {"AU6", "AU12", "AU25"}  # the greedy answer decides it
    clear = svuamc.au_vote(votes[2:] * 4, 0.8, greedy=frozenset({"AU6", "AU12", "AU25"}))
    assert clear.active == {"AU6", "AU12"} and "AU25" in clear.decisive  # eight votes against beat the greedy answer
    assert vote.uncertainty > clear.uncertainty


def test_valence_arousal_weights_the_greedy_answer_and_settles_by_standard_error():
    tight = svuamc.va_vote([(0.5, 0.3), (0.52, 0.31), (0.49, 0.29), (0.51, 0.3)], 0.1, greedy=(0.5, 0.3))
    assert tight.settled and tight.valence == pytest.approx((2.02 + 1.0) / 6) and tight.uncertainty < 0.1
    spread = svuamc.va_vote([(0.8, 0.3), (-0.4, 0.1), (0.2, -0.5), (0.6, 0.6)], 0.1)
    assert not spread.settled and spread.uncertainty > 0.3
    greedy_only = svuamc.va_vote([], 0.1, greedy=(0.2, 0.1))
    assert greedy_only.settled and greedy_only.valence == pytest.approx(0.2)


GREEDY = Sample("happiness", 0.7, 0.4, frozenset({"AU6", "AU12"}), {"expression": "a smile"})


def test_schedule_first_votes_then_one_follow_up_sized_to_the_decision():
    config = SVUAMCConfig(min_samples=4, max_samples=12)
    assert svuamc.next_round(svuamc.aggregate([], ALL, config, GREEDY), config) == 4
    easy = [Sample("happiness", 0.7, 0.4, frozenset({"AU6", "AU12"}))] * 4
    assert svuamc.next_round(svuamc.aggregate(easy, ALL, config, GREEDY), config, rounds=1) == 0
    hard = [Sample(e, 0.7, 0.4, frozenset({"AU6", "AU12"})) for e in ("surprise", "surprise", "happiness", "fear")]
    agg = svuamc.aggregate(hard, ALL, config, GREEDY)
    assert agg.unsettled == (EXPRESSION,)
    assert svuamc.next_round(agg, config, rounds=1) == 8  # no clear lead: straight to the budget
    assert svuamc.next_round(agg, config, rounds=2) == 0  # one follow-up at most
    lead = svuamc.aggregate([Sample("happiness")] * 3 + [Sample("surprise")], (EXPRESSION,), config, GREEDY)
    small = svuamc.next_round(lead, config, rounds=1)
    assert 1 <= small < 8
    # A request whose prompt costs as much as 10 votes is not sent for fewer than 5 of them.
    assert svuamc.next_round(lead, config, rounds=1, overhead=10.0) == max(small, 5)
    assert svuamc.next_round(svuamc.aggregate([], (), config, GREEDY), config) == 0  # nothing asked
    assert svuamc.next_round(svuamc.aggregate([], ALL, SVUAMCConfig(min_samples=0)), SVUAMCConfig(min_samples=0)) == 0


def test_request_overhead_is_the_prompt_in_units_of_one_vote():
    assert svuamc.request_overhead(prompt_cost=0.003, completion_cost=0.0015, choices=5) == pytest.approx(10.0)
    assert svuamc.request_overhead(0.003, 0.0, 5) == 0.0


def test_ambivalent_aus_never_push_a_row_to_the_budget():
    """Over simulated vote streams: coin-flip AUs stop at the first votes, a split expression gets one follow-up."""
    rng = random.Random(0)

    def drawn(p_top: float, p_au: float) -> int:
        samples: list[Sample | None] = []
        rounds, agg = 0, svuamc.aggregate([], (EXPRESSION, AU_LEVEL), CONFIG, GREEDY)
        while (k := svuamc.next_round(agg, CONFIG, rounds)) > 0:
            samples += [
                Sample(
                    "happiness" if rng.random() < p_top else "surprise",
                    aus=frozenset(au for au in ("AU6", "AU12", "AU25", "AU26") if rng.random() < p_au),
                )
                for _ in range(k)
            ]
            rounds += 1
            agg = svuamc.aggregate(samples, (EXPRESSION, AU_LEVEL), CONFIG, GREEDY)
        return len(samples)

    ambivalent = [drawn(0.99, 0.5) for _ in range(200)]
    hard = [drawn(0.55, 0.0) for _ in range(200)]
    assert sum(ambivalent) / len(ambivalent) < CONFIG.min_samples + 1
    assert sum(hard) / len(hard) > CONFIG.max_samples - 2
    assert max(hard) <= CONFIG.max_samples


def test_bad_choices_are_drawn_but_do_not_vote():
    agg = svuamc.aggregate([None, Sample("anger"), None, Sample("anger")], (EXPRESSION,), CONFIG)
    assert agg.samples == 4 and sum(agg.expression.counts.values()) == 2


def test_descriptions_come_from_the_greedy_answer_when_it_agrees():
    votes = [Sample("happiness")] * 4
    agg = svuamc.aggregate(votes, (EXPRESSION,), CONFIG, GREEDY)
    decision = svuamc.decide(votes, agg, CONFIG)
    assert decision.status == "accepted" and decision.levels[EXPRESSION].description == "a smile"
    beaten = [Sample("surprise")] * 12
    agg = svuamc.aggregate(beaten, (EXPRESSION,), CONFIG, GREEDY)
    decision = svuamc.decide(beaten, agg, CONFIG)
    assert decision.levels[EXPRESSION].value == "surprise" and decision.levels[EXPRESSION].description is None


SMILING = {"aus": {"AU6": 1, "AU12": 1, "AU4": 0, "AU15": 0}}


def test_human_labels_outrank_the_agreement_of_samples():
    """Unanimous votes contradicting the human AUs are never kept: the supported consistent candidate, or reject."""
    sure = [Sample("sadness")] * 4
    agg = svuamc.aggregate(sure, (EXPRESSION,), CONFIG, Sample("sadness"))
    rejected = svuamc.decide(sure, agg, CONFIG, human=SMILING, consistency=consistency)
    assert rejected.status == "rejected" and "inconsistent with emotion knowledge" in rejected.reason
    kept = svuamc.decide(sure, agg, SVUAMCConfig(on_inconsistent="keep"), human=SMILING, consistency=consistency)
    assert kept.status == "accepted" and "kept despite knowledge issues" in kept.reason

    # The votes named a consistent candidate often enough: it replaces the greedy answer.
    split = [Sample("happiness")] * 5
    agg = svuamc.aggregate(split, (EXPRESSION,), CONFIG, Sample("sadness"))
    assert agg.expression.label == "sadness"  # 5 votes against the greedy answer's 2: not decisive
    fallback = svuamc.decide(split, agg, CONFIG, human=SMILING, consistency=consistency)
    assert fallback.status == "accepted" and fallback.levels[EXPRESSION].value == "happiness"
    assert "knowledge fallback (expression)" in fallback.reason
    strict = svuamc.decide(split, agg, SVUAMCConfig(on_inconsistent="reject"), human=SMILING, consistency=consistency)
    assert strict.status == "rejected"


def test_generated_aus_are_repaired_toward_the_human_expression():
    votes = [Sample(aus=frozenset({"AU6"}))] * 4
    agg = svuamc.aggregate(votes, (AU_LEVEL,), CONFIG, Sample(aus=frozenset({"AU6"})))
    decision = svuamc.decide(votes, agg, CONFIG, human={"expression": "happiness"}, consistency=consistency)
    assert decision.status == "accepted" and decision.levels[AU_LEVEL].value == {"AU6", "AU12"}
    assert "knowledge fallback (aus)" in decision.reason


def test_a_score_of_exactly_the_threshold_fails():
    """"neutral with active AU14" scores exactly 0.5: contempt, when the votes name it, is preferred; else reject."""
    human = {"aus": {"AU14": 1, "AU12": 0}}
    assert consistency(expression="neutral", aus=human["aus"]).score == pytest.approx(0.5)
    votes = [Sample("neutral")] * 4
    agg = svuamc.aggregate(votes, (EXPRESSION,), CONFIG, Sample("neutral"))
    assert svuamc.decide(votes, agg, CONFIG, human=human, consistency=consistency).status == "rejected"
    votes = [Sample("contempt")] * 3 + [Sample("neutral")]
    agg = svuamc.aggregate(votes, (EXPRESSION,), CONFIG, Sample("neutral"))
    decision = svuamc.decide(votes, agg, CONFIG, human=human, consistency=consistency)
    assert decision.status == "accepted" and decision.levels[EXPRESSION].value == "contempt"


def test_disagreeing_levels_raise_the_uncertainty():
    calm = [Sample("happiness", 0.7, 0.35)] * 4
    far = [Sample("happiness", -0.3, -0.5)] * 4
    levels = (EXPRESSION, VALENCE_AROUSAL)
    near = svuamc.decide(calm, svuamc.aggregate(calm, levels, LENIENT, calm[0]), LENIENT, consistency=consistency)
    off = svuamc.decide(far, svuamc.aggregate(far, levels, LENIENT, far[0]), LENIENT)
    assert off.levels[EXPRESSION].uncertainty > near.levels[EXPRESSION].uncertainty
    assert off.levels[VALENCE_AROUSAL].uncertainty > near.levels[VALENCE_AROUSAL].uncertainty


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
    votes = prompts.response_format((EXPRESSION,), descriptions=False)["json_schema"]["schema"]
    assert set(votes["properties"]) == {"expression"}  # votes are labels only
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
    assert not agg.va.settled
    decision = svuamc.decide(samples, agg, LENIENT, human=human, consistency=consistency)
    assert decision.status == "accepted" and "human labels contradict" in decision.reason


def test_rewriting_agreed_aus_to_excuse_a_generated_expression_costs_their_odds():
    sad_face = frozenset({"AU1", "AU4", "AU15"})
    votes = [Sample("neutral", aus=sad_face)] * 4 + [Sample("sadness", aus=sad_face)]
    agg = svuamc.aggregate(votes, (EXPRESSION, AU_LEVEL), LENIENT, Sample("neutral", aus=sad_face))
    decision = svuamc.decide(votes, agg, LENIENT, consistency=consistency)
    # "neutral" with the three agreed AUs removed would pass too, at the odds (1/8)**3: the sad face wins.
    assert decision.status == "accepted" and decision.levels[EXPRESSION].value == "sadness"
    assert decision.levels[AU_LEVEL].value == sad_face
    assert decision.levels[EXPRESSION].uncertainty > 0.7  # one vote of five: flagged, not trusted


def test_a_level_given_up_leaves_the_others_of_the_row():
    """Acceptance is per level: an uncertain or contradicted expression does not take the row's other labels."""
    votes = [Sample(e, 0.7, 0.4) for e in ("anger", "disgust", "fear", "sadness")] * 3
    agg = svuamc.aggregate(votes, (EXPRESSION, VALENCE_AROUSAL), CONFIG)
    decision = svuamc.decide(votes, agg, CONFIG)
    assert decision.status == "accepted" and set(decision.levels) == {VALENCE_AROUSAL}
    assert "expression left missing: expression uncertain" in decision.reason
    sure = [Sample("sadness", 0.7, 0.4)] * 4  # a sad label on a smiling face, a pleasant valence: the label goes
    agg = svuamc.aggregate(sure, (EXPRESSION, VALENCE_AROUSAL), CONFIG, Sample("sadness", 0.7, 0.4))
    decision = svuamc.decide(sure, agg, CONFIG, human=SMILING, consistency=consistency)
    assert decision.status == "accepted" and set(decision.levels) == {VALENCE_AROUSAL}
    assert "expression left missing: inconsistent with emotion knowledge" in decision.reason


def test_each_generated_au_has_its_own_uncertainty():
    """A weak AU detector is unsure of some AUs of a face, not of the face: each AU's uncertainty is the posterior
    share of the support against its label, so the ambivalent one stands out and the clear ones stay low."""
    votes = [frozenset({"AU6", "AU12", "AU25"})] * 3 + [frozenset({"AU6", "AU12"})] * 3
    vote = svuamc.au_vote(votes, 0.8, greedy=frozenset({"AU6", "AU12", "AU25"}))
    per_au = vote.per_au(vote.active)
    assert set(per_au) == set(svuamc.AUS)
    assert per_au["AU25"] > 0.3 > 0.01 > per_au["AU6"] and per_au["AU6"] == per_au["AU4"]  # present, absent alike
    flipped = vote.per_au(vote.active - {"AU6"})  # a knowledge repair that removed AU6 against every answer
    assert flipped["AU6"] > 0.99 and flipped["AU25"] == per_au["AU25"]
