"""Token logprobs of the simulated vision LLM, read with the official `openai` client over real HTTP: the OpenAI wire
format, and log probabilities that are the model's raw belief (not the sampling temperature's)."""

from __future__ import annotations

import base64
import io
import json
import math
import time

import openai
import PIL.Image
import pytest

from seke_hf.schema import EXPRESSIONS
from seke_hf.simulate import Labels, Priors, SimulatedVLLM, TruthTable
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
from seke_hf.synthetic.faces import draw_face

CANDIDATES = ["happiness", "sadness", "anger", "surprise", "fear", "disgust"]
ALLOWED_AUS = ["AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU15", "AU25"]
FACES = [("fear", 0.95), ("disgust", 0.9), ("surprise", 0.85), ("happiness", 0.3)]


def response_format(name: str, properties: dict) -> dict:
    """A strict `json_schema` response format requiring every property."""
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


SCHEMA = response_format(
    "face",
    {
        "expression": {"type": "string", "enum": CANDIDATES},
        "valence": {"type": "number", "minimum": -1, "maximum": 1},
        "action_units": {"type": "array", "items": {"type": "string", "enum": ALLOWED_AUS}},
        "description": {"type": "string"},
    },
)


def _labels(expression: str) -> Labels:
    valence, arousal = VA_ANCHORS[expression]
    return Labels(expression, valence, arousal, frozenset(PROTOTYPE_AUS[expression]))


@pytest.fixture(scope="module")
def faces() -> list[PIL.Image.Image]:
    return [draw_face(3000 + i, expression=e, size=(64, 64)) for i, (e, _) in enumerate(FACES)]


@pytest.fixture(scope="module")
def truth(faces) -> TruthTable:
    table = TruthTable()
    for i, (face, (expression, difficulty)) in enumerate(zip(faces, FACES, strict=True)):
        table.add(f"face/{i}", _labels(expression), face, difficulty)
    return table


@pytest.fixture(scope="module")
def server(truth):
    # "weak": split expression beliefs, ambivalent AUs and temperature drift, so raw and sampled differ
    with SimulatedVLLM(truth=truth, profile="weak", batch_delay=0.2) as running:
        yield running


@pytest.fixture
def client(server):
    server.faults.clear()
    server.set_faults(logprobs="return")
    with openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as sync_client:
        yield sync_client


def _url(face: PIL.Image.Image) -> str:
    buffer = io.BytesIO()
    face.convert("RGB").save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def body(face: PIL.Image.Image, **params) -> dict:
    content = [{"type": "text", "text": "Label this face."}, {"type": "image_url", "image_url": {"url": _url(face)}}]
    return {"model": "seke-sim-vllm", "messages": [{"role": "user", "content": content}], **params}


def belief(server: SimulatedVLLM, i: int):
    expression, difficulty = FACES[i]
    return server.noise.belief(_labels(expression), difficulty, Priors(), f"face/{i}")


def tokens_over(choice, start: int, stop: int) -> list:
    """The logprob entries of the tokens overlapping content[start:stop]."""
    found, offset = [], 0
    for entry in choice.logprobs.content:
        end = offset + len(entry.token)
        if offset < stop and end > start:
            found.append(entry)
        offset = end
    return found


def value_token(choice, key: str):
    """The entry of the token that starts the value of `"key": "...`."""
    prefix = f'"{key}": "'
    start = choice.message.content.index(prefix) + len(prefix)
    return tokens_over(choice, start, start + 1)[0]


def expression_logprobs(server: SimulatedVLLM, i: int, candidates=CANDIDATES) -> dict[str, float]:
    probs = belief(server, i).expression
    total = sum(probs[e] for e in candidates)
    return {e: math.log(probs[e] / total) for e in candidates}


def test_greedy_expression_token_is_the_belief_and_tokens_are_the_content(server, client, faces):
    for i, face in enumerate(faces):
        response = client.chat.completions.create(
            **body(face, temperature=0, seed=1, response_format=SCHEMA), logprobs=True, top_logprobs=20
        )
        choice = response.choices[0]
        assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
        assert all(t.bytes == list(t.token.encode()) for t in choice.logprobs.content)
        assert choice.logprobs.refusal is None
        expected = expression_logprobs(server, i)
        token = value_token(choice, "expression")
        assert token.token == json.loads(choice.message.content)["expression"]
        assert math.exp(token.logprob) == pytest.approx(math.exp(expected[token.token]), abs=1e-9)
        assert token.logprob == pytest.approx(max(expected.values()))  # greedy: the most likely candidate
        assert {t.token: t.logprob for t in token.top_logprobs} == pytest.approx(expected)
        assert [t.logprob for t in token.top_logprobs] == sorted((t.logprob for t in token.top_logprobs), reverse=True)
        # the description is uncertain too: the labels are not the only tokens below 0
        description = tokens_over(choice, choice.message.content.index('"description": "') + 16, 10**9)
        assert sum(t.logprob < 0 for t in description) > 5
        # logprobs change no usage
        plain = client.chat.completions.create(**body(face, temperature=0, seed=1, response_format=SCHEMA))
        assert plain.choices[0].logprobs is None and plain.choices[0].message.content == choice.message.content
        assert plain.usage.completion_tokens == response.usage.completion_tokens


def test_sampled_choices_carry_the_raw_belief_not_the_tempered_one(server, client, faces):
    chosen = set()
    for i, face in enumerate(faces[:3]):
        response = client.chat.completions.create(
            **body(face, temperature=0.8, n=8, seed=5, response_format=SCHEMA), logprobs=True, top_logprobs=3
        )
        expected = expression_logprobs(server, i)
        for choice in response.choices:
            token = value_token(choice, "expression")
            chosen.add((i, token.token))
            assert token.logprob == pytest.approx(expected[token.token], abs=1e-9)
            assert len(token.top_logprobs) == 3
            top3 = sorted(expected.values(), reverse=True)[:3]
            assert [t.logprob for t in token.top_logprobs] == pytest.approx(top3)
    assert len(chosen) > 3, "hard faces should split their samples"


def test_action_unit_array_sums_to_the_log_probability_of_its_set(server, client, faces):
    for i, face in enumerate(faces):
        probs = {au: min(1 - 1e-6, max(1e-6, belief(server, i).aus[au])) for au in ALLOWED_AUS}
        response = client.chat.completions.create(
            **body(face, temperature=1.0, n=4, seed=9, response_format=SCHEMA), logprobs=True, top_logprobs=20
        )
        for choice in response.choices:
            content = choice.message.content
            reported = json.loads(content)["action_units"]
            start = content.index('"action_units": [') + len('"action_units": ')
            array = tokens_over(choice, start, content.index("]", start) + 1)
            expected = sum(math.log(p if au in reported else 1 - p) for au, p in probs.items())
            assert sum(t.logprob for t in array) == pytest.approx(expected, abs=1e-9)
            names = [t for t in array if t.token in ALLOWED_AUS]
            assert [t.token for t in names] == reported  # each AU name is one whole token
            closing = array[-1]
            assert "]" in closing.token and closing.token in [t.token for t in closing.top_logprobs]
            if names:
                first = names[0]
                alternatives = [t.token for t in first.top_logprobs]
                assert "]" in alternatives and set(alternatives) - {"]"} <= set(ALLOWED_AUS)
                assert sum(math.exp(t.logprob) for t in first.top_logprobs) == pytest.approx(1.0)


def test_action_units_keyed_by_name_score_each_value(server, client, faces):
    keyed = {"type": "object", "properties": {au: {"type": "boolean"} for au in ALLOWED_AUS}}
    keyed["required"], keyed["additionalProperties"] = ALLOWED_AUS, False
    schema = response_format("aus", {"action_units": keyed})
    probs = {au: min(1 - 1e-6, max(1e-6, belief(server, 2).aus[au])) for au in ALLOWED_AUS}
    choice = client.chat.completions.create(
        **body(faces[2], temperature=1.0, seed=4, response_format=schema), logprobs=True, top_logprobs=2
    ).choices[0]
    values = json.loads(choice.message.content)["action_units"]
    scored = [t for t in choice.logprobs.content if t.token in ("true", "false")]
    assert [t.token == "true" for t in scored] == [values[au] for au in ALLOWED_AUS]
    for token, au in zip(scored, ALLOWED_AUS, strict=True):
        assert token.logprob == pytest.approx(math.log(probs[au] if values[au] else 1 - probs[au]))
        assert {t.token for t in token.top_logprobs} == {"true", "false"}


def test_valence_and_prose_expression(server, client, faces):
    response = client.chat.completions.create(
        **body(faces[0], temperature=0, response_format=SCHEMA), logprobs=True, top_logprobs=5
    )
    choice = response.choices[0]
    start = choice.message.content.index('"valence": ') + len('"valence": ')
    valence = tokens_over(choice, start, start + 1)[0]
    assert float(valence.token) == json.loads(choice.message.content)["valence"] and valence.logprob < 0
    assert len(valence.top_logprobs) == 5 and all(-1 <= float(t.token) <= 1 for t in valence.top_logprobs)

    prose = client.chat.completions.create(**body(faces[1], temperature=0), logprobs=True, top_logprobs=20).choices[0]
    assert "".join(t.token for t in prose.logprobs.content) == prose.message.content
    line = prose.message.content.index("Expression: ") + len("Expression: ")
    token = tokens_over(prose, line, line + 1)[0]
    assert token.token in EXPRESSIONS and token.logprob < 0  # a weak model, a hard face: not sure
    assert sum(math.exp(t.logprob) for t in token.top_logprobs) == pytest.approx(1.0)  # all nine candidates


def test_unknown_face_answers_from_its_flat_belief(client):
    stranger = draw_face(99, expression="neutral", size=(64, 64))
    choice = client.chat.completions.create(
        **body(stranger, temperature=0, response_format=SCHEMA), logprobs=True, top_logprobs=20
    ).choices[0]
    token = value_token(choice, "expression")
    assert token.logprob > math.log(0.5) - 1 and len(token.top_logprobs) == len(CANDIDATES)
    assert sum(math.exp(t.logprob) for t in token.top_logprobs) == pytest.approx(1.0)
    assert token.logprob == max(t.logprob for t in token.top_logprobs)


def test_truncated_and_refused_choices(server, client, faces):
    server.inject("truncate")
    server.inject("refusal")
    response = client.chat.completions.create(
        **body(faces[0], temperature=0, n=3, response_format=SCHEMA), logprobs=True
    )
    cut, refused, whole = response.choices
    assert cut.finish_reason == "length"
    assert "".join(t.token for t in cut.logprobs.content) == cut.message.content
    assert whole.message.content.startswith(cut.message.content)
    assert refused.message.content is None and refused.logprobs.content is None
    assert "".join(t.token for t in refused.logprobs.refusal) == refused.message.refusal
    assert all(t.top_logprobs == [] for t in whole.logprobs.content)  # no top_logprobs asked


def test_provider_modes_and_parameter_errors(server, client, faces):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**body(faces[0]), top_logprobs=3)
    assert error.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**body(faces[0]), logprobs=True, top_logprobs=21)
    assert error.value.param == "top_logprobs"

    server.set_faults(logprobs="ignore")
    response = client.chat.completions.create(**body(faces[0], response_format=SCHEMA), logprobs=True, top_logprobs=2)
    assert response.choices[0].logprobs is None and json.loads(response.choices[0].message.content)

    server.set_faults(logprobs="refuse")
    server.reset_stats()
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**body(faces[0]), logprobs=True)
    assert error.value.param == "logprobs" and "not supported" in error.value.message
    assert server.stats()["faults"] == {"reject_logprobs": 1}
    assert client.chat.completions.create(**body(faces[0]), logprobs=False).choices[0].logprobs is None

    with pytest.raises(ValueError, match="logprobs"):
        SimulatedVLLM(logprobs="maybe")


def test_streamed_answer_keeps_null_logprobs(client, faces):
    stream = client.chat.completions.create(**body(faces[0], temperature=0), logprobs=True, stream=True)
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert all(c.choices[0].logprobs is None for c in chunks)


def test_batch_lines_get_the_same_logprobs(server, client, faces):
    request = body(faces[1], temperature=0.8, n=2, seed=3, response_format=SCHEMA, logprobs=True, top_logprobs=4)
    lines = [
        {"custom_id": "with", "method": "POST", "url": "/v1/chat/completions", "body": request},
        {"custom_id": "without", "method": "POST", "url": "/v1/chat/completions", "body": body(faces[1])},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("requests.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 20
    while (batch := client.batches.retrieve(batch.id)).status != "completed":
        assert time.monotonic() < deadline and batch.status in ("validating", "in_progress", "finalizing")
        time.sleep(0.02)
    output = {
        line["custom_id"]: line["response"]["body"]
        for line in map(json.loads, client.files.content(batch.output_file_id).text.splitlines())
    }
    assert output["without"]["choices"][0]["logprobs"] is None
    online = client.chat.completions.create(**request)
    for offline, live in zip(output["with"]["choices"], online.choices, strict=True):
        assert offline["logprobs"] == live.logprobs.model_dump()
