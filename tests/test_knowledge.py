"""The emotion knowledge: complete tables, and consistency checks that flag the classic contradictions."""

from __future__ import annotations

import numpy as np
import pytest

from seke_hf.knowledge import (
    ACTION_UNITS,
    CIRCUMPLEX,
    PROTOTYPES,
    Consistency,
    consistency,
    expression_au_affinity,
    knowledge_prompt,
)
from seke_hf.schema import AUS, EXPRESSIONS


def test_tables_cover_the_label_sets():
    assert list(ACTION_UNITS) == AUS
    assert all(au.name == name and au.facs_name and au.appearance for name, au in ACTION_UNITS.items())
    assert ACTION_UNITS["AU12"].facs_name == "Lip Corner Puller"
    assert set(PROTOTYPES) | {"other"} == set(EXPRESSIONS)
    assert PROTOTYPES["neutral"] == (frozenset(),)
    assert all(set(p) <= set(AUS) for prototypes in PROTOTYPES.values() for p in prototypes)
    assert set(CIRCUMPLEX) | {"other"} == set(EXPRESSIONS)
    assert all(-1 <= v <= 1 and -1 <= a <= 1 for v, a in CIRCUMPLEX.values())
    assert CIRCUMPLEX["happiness"][0] > 0 > CIRCUMPLEX["sadness"][0]
    assert CIRCUMPLEX["surprise"][1] > 0 > CIRCUMPLEX["sadness"][1]


def test_circumplex_anchors_are_consistent_with_their_own_expression():
    for expression, (valence, arousal) in CIRCUMPLEX.items():
        assert consistency(expression, valence, arousal) == Consistency(1.0, ())


def test_every_prototype_is_consistent_and_has_full_affinity():
    for expression, prototypes in PROTOTYPES.items():
        for prototype in prototypes:
            assert expression_au_affinity(expression, prototype) == 1.0
            assert consistency(expression, aus=prototype).is_consistent(), (expression, prototype)


@pytest.mark.parametrize(
    ("labels", "issue"),
    [
        ({"expression": "happiness", "valence": -0.7}, "happiness with valence -0.70"),
        ({"expression": "sadness", "aus": ["AU6", "AU17"]}, "sadness without any of AU1/AU4/AU15"),
        ({"expression": "surprise", "valence": 0.3, "arousal": -0.8}, "surprise with arousal -0.80"),
        ({"expression": "anger", "aus": ["AU7", "AU12"]}, "anger with AU12 (Lip Corner Puller) but no AU4"),
        ({"valence": -0.8, "aus": ["AU6", "AU12"]}, "AU6+AU12 (smile) with valence -0.80"),
        ({"expression": "neutral", "valence": 1.4}, "valence 1.40 outside [-1, 1]"),
    ],
)
def test_contradictions_are_flagged(labels, issue):
    result = consistency(**labels)
    assert not result.is_consistent()
    assert result.score < 0.5
    assert any(text.startswith(issue) for text in result.issues), result.issues


def test_consistent_label_sets_pass():
    assert consistency("happiness", 0.8, 0.4, ["AU6", "AU12", "AU25"]).score == 1.0
    assert consistency("sadness", -0.6, -0.3, {"AU1": 1, "AU4": 1, "AU15": 1, "AU12": 0}).score == 1.0
    assert consistency("anger", -0.5, 0.7, ["AU4", "AU5", "AU7", "AU23"]).score == 1.0
    assert consistency(EXPRESSIONS.index("fear"), -0.5, 0.6).score == 1.0
    assert consistency(np.int64(4), np.float32(0.5), None).score == 1.0  # values as they come out of Arrow/numpy
    assert consistency(np.int64(4), np.float32(-0.5), None).score < 0.5


def test_partial_label_sets_check_only_what_is_there():
    assert consistency() == Consistency(1.0, ())
    assert consistency(-1, None, None, None) == Consistency(1.0, ())
    assert consistency("other", -0.9, -0.9, ["AU4"]).score == 1.0
    assert consistency(valence=0.2, arousal=float("nan")).score == 1.0
    # Sadness's defining AUs were not coded (-1): nothing to hold against the label.
    not_coded = {au: -1 for au in AUS} | {"AU6": 1, "AU12": 0}
    assert consistency("sadness", aus=not_coded).is_consistent()
    # Coded as absent, they are held against it.
    assert not consistency("sadness", aus=not_coded | {"AU1": 0, "AU4": 0, "AU15": 0}).is_consistent()


def test_atypical_au_pattern_lowers_the_score_without_failing_alone():
    result = consistency("happiness", aus=["AU1", "AU4", "AU9", "AU12", "AU15"])
    assert 0.5 <= result.score < 1.0
    assert "matches no prototype well" in result.issues[0]


def test_scores_grade_with_the_size_of_the_contradiction():
    mild, strong = consistency("happiness", valence=-0.1), consistency("happiness", valence=-0.4)
    assert 1.0 > mild.score > strong.score > 0.0


def test_affinity():
    assert expression_au_affinity("happiness", ["AU6", "AU12"]) == 1.0
    assert expression_au_affinity("anger", ["AU12"]) == 0.0
    assert 0 < expression_au_affinity("fear", ["AU1", "AU2"]) < expression_au_affinity("fear", ["AU1", "AU2", "AU4"])
    assert expression_au_affinity("neutral", []) == 1.0
    assert expression_au_affinity("neutral", ["AU25"]) == 0.5
    assert expression_au_affinity("other", ["AU12"]) == 0.0
    # Prototype AUs that were not coded are not held against the match.
    assert expression_au_affinity("surprise", ["AU1", "AU2"], coded=["AU1", "AU2", "AU4"]) == 1.0


def test_bad_names_raise():
    with pytest.raises(ValueError, match="unknown expression"):
        consistency("joy")
    with pytest.raises(ValueError, match="unknown AU"):
        consistency("happiness", aus=["AU12", "AU43"])
    with pytest.raises(TypeError):
        consistency("happiness", aus="AU12")


def test_knowledge_prompt_is_deterministic_and_complete():
    prompt = knowledge_prompt()
    assert prompt == knowledge_prompt()
    for au in ACTION_UNITS.values():
        assert f"{au.name} {au.facs_name}" in prompt
    assert "AU1+AU4+AU15" in prompt
    assert "happiness: valence +0.75, arousal +0.35" in prompt
