"""The simulated model's pure parts: the noise model, prior parsing, schema answers and token accounting."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from seke_hf.schema import AUS, EXPRESSIONS
from seke_hf.simulate import SimulatedVLLM
from seke_hf.simulate.accounting import PromptCache, count_text_tokens, image_tokens
from seke_hf.simulate.answer import render
from seke_hf.simulate.noise import CONFUSIONS, PROFILES, Labels, NoiseModel, Priors, Sample
from seke_hf.simulate.request import AnswerSpec, RequestError, check_strict_schema, parse_priors, parse_request

FEAR = Labels("fear", -0.6, 0.7, frozenset({"AU1", "AU2", "AU4", "AU5", "AU20", "AU26"}))


def beliefs(model: NoiseModel, difficulty: float, priors: Priors | None = None, count: int = 1500):
    return [model.belief(FEAR, difficulty, priors or Priors(), key=f"img{k}") for k in range(count)]


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_belief_error_rate_follows_difficulty(difficulty):
    model = NoiseModel(expression_error=(0.05, 0.65))
    wrong = np.mean([b.top_expression != "fear" for b in beliefs(model, difficulty)])
    assert abs(wrong - (0.05 + 0.6 * difficulty)) < 0.04  # 1500 images: sd <= 0.013


def test_wrong_beliefs_follow_realistic_confusions():
    tops = Counter(b.top_expression for b in beliefs(NoiseModel(), 1.0) if b.top_expression != "fear")
    share = {e: count / sum(tops.values()) for e, count in tops.items()}
    assert set(share) <= set(CONFUSIONS["fear"])
    assert abs(share["surprise"] - CONFUSIONS["fear"]["surprise"]) < 0.06


def test_votes_split_with_difficulty_and_temperature_zero_is_greedy():
    model = NoiseModel(vote_split=(0.0, 0.5))
    rng = np.random.default_rng(0)
    for difficulty, expected in ((0.0, 1.0), (1.0, 0.5)):
        belief = model.belief(FEAR, difficulty, key="one face")
        votes = [model.sample(belief, rng).expression for _ in range(3000)]
        assert abs(votes.count(belief.top_expression) / 3000 - expected) < 0.03
        greedy = {model.sample(belief, rng, temperature=0) for _ in range(20)}
        assert len(greedy) == 1 and next(iter(greedy)).expression == belief.top_expression


def test_restricted_candidates_always_answered():
    model = NoiseModel()
    belief = model.belief(FEAR, 0.0, key="easy")
    rng = np.random.default_rng(1)
    answers = {model.sample(belief, rng, expressions=["happiness", "neutral"]).expression for _ in range(50)}
    assert answers <= {"happiness", "neutral"} and answers
    aus = {au for _ in range(50) for au in model.sample(belief, rng, aus=["AU1", "AU12"]).action_units}
    assert aus <= {"AU1", "AU12"}


def test_valence_bias_is_per_image_and_survives_averaging():
    model = NoiseModel(expression_error=(0.0, 0.0), va_bias=(0.2, 0.2), va_noise=(0.1, 0.1))
    rng = np.random.default_rng(2)
    biases, spreads = [], []
    for b in beliefs(model, 0.5, count=300):
        samples = [model.sample(b, rng).valence for _ in range(30)]
        biases.append(np.mean(samples) - FEAR.valence)
        spreads.append(np.std(samples))
    assert abs(np.std(biases) - 0.2) < 0.04  # not 0.1/sqrt(30): the bias is the image's, not the sample's
    assert abs(np.mean(spreads) - 0.1) < 0.02
    hot = [model.sample(b, rng, temperature=2.0).valence - b.valence for b in beliefs(model, 0.5, count=300)]
    assert abs(np.std(hot) - 0.2) < 0.04  # per-sample noise scales with the temperature


def test_au_miss_and_false_rates():
    model = NoiseModel(expression_error=(0.0, 0.0), au_miss=(0.1, 0.5), au_false=(0.0, 0.2))
    for difficulty in (0.0, 1.0):
        present = np.array([[b.aus[au] > 0.5 for au in AUS] for b in beliefs(model, difficulty)])
        active = np.array([au in FEAR.aus for au in AUS])
        miss = 1 - present[:, active].mean()
        false = present[:, ~active].mean()
        assert abs(miss - (0.1 + 0.4 * difficulty)) < 0.03
        assert abs(false - 0.2 * difficulty) < 0.02
    # Per sample, a believed-present AU is left out with au_split, a believed-absent one reported with au_flicker.
    model = NoiseModel(au_miss=(0.0, 0.0), au_false=(0.0, 0.0), au_split=(0.0, 0.3), au_flicker=(0.0, 0.1))
    belief, rng = model.belief(FEAR, 1.0, Priors(expression="fear"), key="k"), np.random.default_rng(3)
    samples = [set(model.sample(belief, rng).action_units) for _ in range(2000)]
    dropped = np.mean([len(FEAR.aus - s) / len(FEAR.aus) for s in samples])
    added = np.mean([len(s - FEAR.aus) / (len(AUS) - len(FEAR.aus)) for s in samples])
    assert abs(dropped - 0.15) < 0.02 and abs(added - 0.05) < 0.01  # difficulty 1 halved by the stated expression


def test_consistent_priors_help_and_contradicting_ones_do_not():
    model = NoiseModel()
    plain = np.mean([b.top_expression != "fear" for b in beliefs(model, 1.0)])
    va_prior = Priors(valence=-0.55, arousal=0.65)
    helped = np.mean([b.top_expression != "fear" for b in beliefs(model, 1.0, va_prior)])
    assert helped < plain - 0.15  # difficulty halved by one consistent level
    wrong_prior = Priors(valence=0.8, arousal=-0.5)
    unhelped = np.mean([b.top_expression != "fear" for b in beliefs(model, 1.0, wrong_prior)])
    assert abs(unhelped - plain) < 0.05
    stated = model.belief(FEAR, 1.0, Priors(expression="surprise", aus_present=frozenset({"AU12"})), key="x")
    assert stated.top_expression == "surprise" and stated.aus["AU12"] == 1.0


def test_beliefs_are_seeded_and_unknown_faces_are_flat():
    assert NoiseModel(seed=1).belief(FEAR, 0.7, key="k") == NoiseModel(seed=1).belief(FEAR, 0.7, key="k")
    assert any(NoiseModel(seed=s).belief(FEAR, 0.7, key="k") != NoiseModel().belief(FEAR, 0.7, key="k") for s in (1, 2))
    unknown = NoiseModel().unknown_belief("unknown/abc")
    assert unknown.confidence <= 0.3 + 1e-9
    with pytest.raises(ValueError, match="unknown expression"):
        Labels("joy", 0.0, 0.0)
    assert NoiseModel(expression_error=0.1).expression_error == (0.1, 0.1)  # one rate for every difficulty
    with pytest.raises(ValueError, match="au_miss must be in"):
        NoiseModel(au_miss=(0.1, 1.5))
    with pytest.raises(TypeError, match="unknown parameter"):
        SimulatedVLLM(expresion_error=0.1)


def test_priors_are_parsed_from_lines():
    text = (
        "You know these human labels:\n"
        "Expression: Happiness\n- valence: 0.62\nAROUSAL: -.31\n"
        "action units present: AU6, au12\naction units absent: AU4, AU15, AU99\n"
        "Answer with the expression: one of the candidates."
    )
    priors = parse_priors(text)
    assert priors == Priors("happiness", 0.62, -0.31, frozenset({"AU6", "AU12"}), frozenset({"AU4", "AU15"}))
    assert parse_priors("expression: joy\nvalence: 7\nDescribe the expression: carefully.") == Priors()


def test_schema_answers_cover_object_au_forms_and_descriptions():
    text = {"type": "string"}
    schema = {
        "type": "object",
        "properties": {
            "emotion": {"$ref": "#/$defs/label"},
            "valence": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
            "AU12": {"type": "boolean"},
            "aus": {"type": "object", "properties": {"AU6": {"type": "integer"}, "AU4": {"enum": ["present", "no"]}}},
            "descriptions": {"type": "object", "properties": {"expression": {"type": "string"}, "aus": text}},
            "confidence": {"type": "number"},
        },
        "$defs": {"label": {"type": "string", "enum": ["Happiness", "Neutral"]}},
    }  # fmt: skip
    sample = Sample("happiness", 0.71, 0.3, ("AU6", "AU12"), confidence=0.8)
    spec = AnswerSpec("json_schema", schema, expressions={"happiness": "Happiness", "neutral": "Neutral"})
    answer = json.loads(render(sample, spec))
    assert answer["emotion"] == "Happiness" and answer["valence"] == 0.71 and answer["AU12"] is True
    assert answer["aus"] == {"AU6": 1, "AU4": "no"} and answer["confidence"] == 0.8
    assert "happiness" in answer["descriptions"]["expression"] and "AU12" in answer["descriptions"]["aus"]
    assert "happiness" not in answer["descriptions"]["aus"]


def test_strict_schema_rules():
    good = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    check_strict_schema(good, "x")
    with pytest.raises(RequestError, match="Missing 'a'"):
        check_strict_schema({**good, "required": []}, "x")


def test_token_estimates():
    assert image_tokens(512, 512, "high") == 85 + 170
    assert image_tokens(4096, 2048, "auto") == 85 + 170 * 6  # -> 2048x1024 -> 1536x768: 3x2 tiles
    assert image_tokens(4096, 2048, "low") == 85
    assert 8 <= count_text_tokens("Which facial expression does this person show?") <= 12
    cache = PromptCache()
    units = [f"t{i}" for i in range(1500)]
    assert cache.cached_tokens(units) == 0
    assert cache.cached_tokens(units[:1400] + ["changed"] * 100) == 1280
    assert cache.cached_tokens(units[:1000]) == 0


def _body(text: str, system: str = "") -> dict:
    image = "data:image/png;base64,iVBORw0KGgo="
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image}}]
    return {"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}]}


def test_json_object_and_prose_read_the_request_from_the_user_message():
    system = f"Labels: {', '.join(EXPRESSIONS)}. Action units: {', '.join(AUS)}. Valence and arousal too. JSON."
    verify = (
        "Decide. The expression is one of: fear, surprise. For these action units only: AU1, AU26.\nexpression: fear"
    )
    spec = parse_request({**_body(verify, system), "response_format": {"type": "json_object"}}).answer
    assert spec.expressions == {"fear": "fear", "surprise": "surprise"} and spec.aus == {"AU1": "AU1", "AU26": "AU26"}
    assert spec.levels == ("expression", "aus")
    sample = Sample("fear", -0.4, 0.7, ("AU1",))
    assert set(json.loads(render(sample, spec))) == {"expression", "action_units", "description"}
    prose = parse_request(_body("What does the face show? Reply like <answer>happiness</answer>.", system)).answer
    assert prose.kind == "text" and prose.answer_tag == "expression" and prose.expressions is None
    assert render(sample, prose).endswith("<answer>fear</answer>")


def test_action_units_as_objects():
    item = {"type": "object", "properties": {"au": {"enum": ["AU6", "AU12"]}, "present": {"type": "boolean"}}}
    schema = {"type": "object", "properties": {"action_units": {"type": "array", "items": item}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "aus", "schema": schema}}
    spec = parse_request({**_body("Which AUs?"), "response_format": fmt}).answer
    assert spec.aus == {"AU6": "AU6", "AU12": "AU12"}
    answer = json.loads(render(Sample("happiness", 0.5, 0.2, ("AU12",)), spec))
    assert answer == {"action_units": [{"au": "AU12", "present": True}]}


# -- profiles ---------------------------------------------------------------------------------------------------------
def faces(count: int = 400):
    """(truth, difficulty, key) of varied faces: every expression, difficulties spread like the truth table's."""
    from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
    from seke_hf.simulate.truth import derived_difficulty

    for k in range(count):
        expression = EXPRESSIONS[k % 8]
        truth = Labels(expression, *VA_ANCHORS[expression], frozenset(PROTOTYPE_AUS[expression]))
        yield truth, derived_difficulty(f"face{k}"), f"face{k}"


def test_profiles_are_named_and_documented():
    assert {"default", "ambivalent-aus", "noisy-va", "confident-errors"} <= set(PROFILES)
    assert all(profile.summary for profile in PROFILES.values())
    assert NoiseModel.from_profile("default") == NoiseModel()
    assert NoiseModel.from_profile("noisy-va", seed=3).seed == 3
    with pytest.raises(ValueError, match="unknown noise profile 'shaky'"):
        NoiseModel.from_profile("shaky")
    with pytest.raises(TypeError, match="either noise= or profile="):
        SimulatedVLLM(noise=NoiseModel(), profile="noisy-va")
    with SimulatedVLLM(profile="confident-errors", seed=2) as server:
        assert server.noise == NoiseModel.from_profile("confident-errors", seed=2)


def test_ambivalent_aus_profile_names_many_aus_of_a_face_half_the_time():
    ambivalent = NoiseModel.from_profile("ambivalent-aus")
    middle = [sum(0.25 <= p <= 0.75 for p in ambivalent.belief(t, d, key=k).aus.values()) for t, d, k in faces()]
    plain = [sum(0.25 <= p <= 0.75 for p in NoiseModel().belief(t, d, key=k).aus.values()) for t, d, k in faces()]
    assert np.mean(middle) >= 4 and np.mean(np.array(middle) >= 3) > 0.8  # many AUs of most faces
    assert np.mean(plain) < 1.5


def test_noisy_va_profile_spreads_samples_by_015_to_025():
    model, rng = NoiseModel.from_profile("noisy-va"), np.random.default_rng(0)
    spreads = []
    for truth, d, key in faces(100):
        belief = model.belief(truth, d, key=key)
        spreads.append(np.std([model.sample(belief, rng, temperature=0.8).valence for _ in range(40)]))
    assert 0.15 <= np.mean(spreads) <= 0.25


def test_confident_errors_profile_greedy_beats_the_sampled_majority():
    model, rng = NoiseModel.from_profile("confident-errors"), np.random.default_rng(0)
    greedy = majority = 0
    for truth, d, key in faces():
        belief = model.belief(truth, d, key=key)
        greedy += model.sample(belief, rng, temperature=0).expression == truth.expression
        votes = Counter(model.sample(belief, rng, temperature=0.8).expression for _ in range(16))
        majority += votes.most_common(1)[0][0] == truth.expression
    assert greedy > majority + 12  # 400 faces: temperature flattens toward the confusions
    # A wrong belief is confident: its top keeps most of the probability.
    wrong = [b for t, d, k in faces() if (b := model.belief(t, d, key=k)).top_expression != t.expression]
    assert wrong and np.mean([b.confidence for b in wrong]) > 0.85


def test_simulate_command_names_the_profiles(capsys):
    from seke_hf.cli import main

    assert main(["simulate", "--truth", "unused.jsonl", "--profile", "shaky"]) == 1
    assert "expected one of default, ambivalent-aus" in capsys.readouterr().err
