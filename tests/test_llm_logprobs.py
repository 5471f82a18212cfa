"""The model's own probabilities of structured-answer fields, read from token logprobs (`seke_hf.llm.logprobs`)."""

from __future__ import annotations

import json
import math
import re

import pytest

from seke_hf.annotate import prompts, svuamc
from seke_hf.llm.logprobs import ValueLogprob, field_logprobs


def tokens(pieces: list[str], logprobs: dict[int, float], alternatives: dict[int, dict[str, float]]) -> list[dict]:
    """OpenAI-style `logprobs.content` entries for `pieces` (logprob 0 unless given)."""
    out = []
    for i, piece in enumerate(pieces):
        lp = logprobs.get(i, 0.0)
        top = [{"token": piece, "logprob": lp, "bytes": list(piece.encode())}]
        top += [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alternatives.get(i, {}).items()]
        out.append({"token": piece, "logprob": lp, "bytes": list(piece.encode()), "top_logprobs": top})
    return out


ANSWER = {
    "expression": "happiness",
    "valence": 0.62,
    "action_units": ["AU6", "AU12"],
    "descriptions": {"expression": 'smiling, "expression": "sadness"', "aus": "AU6 and AU12"},
}


def test_a_field_value_sums_its_tokens_and_names_its_alternatives():
    text = json.dumps(ANSWER)
    pieces = re.findall(r"\w+|\s+|[^\w\s]", text)
    index = {p: i for i, p in reversed(list(enumerate(pieces)))}  # first occurrence of each piece
    logprobs = {index["happiness"]: math.log(0.7), index["AU6"]: math.log(0.8), index["AU12"]: math.log(0.5)}
    closing = pieces.index("]")
    logprobs[closing] = math.log(0.9)
    for i, p in enumerate(pieces):  # description words are uncertain too: they must not leak into the labels
        if i > closing and p.isalpha():
            logprobs[i] = -0.4
    found = field_logprobs(text, tokens(pieces, logprobs, {index["happiness"]: {"sadness": math.log(0.2)}}),
                           ("expression", "action_units", "valence", "arousal"))  # fmt: skip
    assert found["expression"].probability == pytest.approx(0.7)
    assert found["expression"].alternatives == {"happiness": math.log(0.7), "sadness": math.log(0.2)}
    assert found["action_units"].probability == pytest.approx(0.8 * 0.5 * 0.9)
    assert found["valence"].probability == 1.0
    assert "arousal" not in found  # not in the answer


def test_fused_tokens_are_split_at_the_value():
    """A tokenizer may fuse the structure with the value (`":"happ`): alternatives keep only the value's part."""
    pieces = ['{"', "expression", '":"happ', "iness", '"}']
    content = tokens(pieces, {2: math.log(0.6)}, {2: {'":"sad': math.log(0.3), '":': -9.0}})
    found = field_logprobs("".join(pieces), content, ("expression",))
    assert found["expression"].alternatives == {"happ": math.log(0.6), "sad": math.log(0.3)}
    sample = prompts.parse_sample("".join(pieces), logprobs=found)
    assert sample.expression_probs == pytest.approx({"happiness": 0.6, "sadness": 0.3})


def test_ambiguous_first_tokens_say_nothing_and_mismatched_tokens_give_nothing():
    pieces = ['{"', "expression", '":"', "fear", '"}']
    content = tokens(pieces, {3: math.log(0.5)}, {3: {"s": math.log(0.4), "ne": math.log(0.1)}})
    found = field_logprobs("".join(pieces), content, ("expression",))
    sample = prompts.parse_sample("".join(pieces), logprobs=found)
    assert sample.expression_probs == pytest.approx({"fear": 0.5, "neutral": 0.1})  # "s": 2 names
    assert field_logprobs('{"expression": "fear"}', content, ("expression",)) == {}  # tokens of another text
    assert field_logprobs("no json", tokens(["no json"], {}, {}), ("expression",)) == {}


def test_value_logprobs_survive_the_cache_format():
    value = ValueLogprob(-0.25, {"sad": -1.5})
    assert ValueLogprob.from_json(json.loads(json.dumps(value.to_json()))) == value


def test_the_models_probability_orders_unanimous_votes():
    """Four unanimous votes are the same evidence on every face; the model's own probability tells them apart."""
    sure = svuamc.expression_vote(["anger"] * 4, 0.95, "anger", 2, {"anger": 0.97}, 12.0)
    torn = svuamc.expression_vote(["anger"] * 4, 0.95, "anger", 2, {"anger": 0.45, "disgust": 0.4}, 12.0)
    plain = svuamc.expression_vote(["anger"] * 4, 0.95, "anger", 2)
    assert sure.uncertainty < plain.uncertainty < torn.uncertainty
    assert torn.label == "anger" and torn.candidates[:2] == ("anger", "disgust")  # a candidate for knowledge
    assert plain.uncertainty == 1 - 7 / 8


def test_the_models_set_probability_orders_au_sets():
    votes = [frozenset({"AU6", "AU12"})] * 4
    sure = svuamc.au_vote(votes, 0.8, frozenset({"AU6", "AU12"}), model=0.95, model_weight=12.0)
    torn = svuamc.au_vote(votes, 0.8, frozenset({"AU6", "AU12"}), model=0.3, model_weight=12.0)
    assert sure.uncertainty < svuamc.au_vote(votes, 0.8, frozenset({"AU6", "AU12"})).uncertainty < torn.uncertainty
