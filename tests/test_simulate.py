"""The simulated vision LLM over real HTTP, driven by the official `openai` client (sync and async)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import PIL.Image
import pytest

from seke_hf.schema import AUS, EXPRESSIONS
from seke_hf.simulate import Labels, SimulatedVLLM, TruthTable
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
from seke_hf.synthetic.faces import draw_face
from seke_hf.synthetic.rafdb import write_rafdb

LABELLED = [e for e in EXPRESSIONS if e != "other"]
N_FACES = 160


def _face_labels(i: int) -> Labels:
    expression = LABELLED[i % len(LABELLED)]
    valence, arousal = VA_ANCHORS[expression]
    return Labels(expression, valence, arousal, frozenset(PROTOTYPE_AUS[expression]))


def _difficulty(i: int) -> float:
    return (i * 7 % N_FACES) / (N_FACES - 1)


@pytest.fixture(scope="module")
def faces() -> list[PIL.Image.Image]:
    return [draw_face(1000 + i, expression=_face_labels(i).expression, size=(96, 96)) for i in range(N_FACES)]


@pytest.fixture(scope="module")
def truth(faces) -> TruthTable:
    table = TruthTable()
    for i, face in enumerate(faces):
        table.add(f"face/{i}", _face_labels(i), face, _difficulty(i))
    return table


def data_url(image: PIL.Image.Image, size: tuple[int, int] = (64, 64), quality: int = 70) -> str:
    """As an annotator sends it: resized and re-encoded, never the original bytes."""
    buffer = io.BytesIO()
    image.convert("RGB").resize(size, PIL.Image.BICUBIC).save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def ask(text: str, image_url: str, detail: str = "auto", system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_url, "detail": detail}}]
    return [*messages, {"role": "user", "content": content}]


def label_schema(expressions=EXPRESSIONS, aus=AUS) -> dict:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "face_labels",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "expression": {"type": "string", "enum": list(expressions)},
                    "valence": {"type": "number", "minimum": -1, "maximum": 1},
                    "arousal": {"type": "number", "minimum": -1, "maximum": 1},
                    "action_units": {"type": "array", "items": {"type": "string", "enum": list(aus)}},
                    "description": {"type": "string"},
                },
                "required": ["expression", "valence", "arousal", "action_units", "description"],
                "additionalProperties": False,
            },
        },
    }


def conforms(value, schema) -> bool:
    """The subset of JSON Schema the label schemas use."""
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "object":
        props = schema.get("properties", {})
        if set(value) != set(props) or not set(schema.get("required", [])) <= set(value):
            return False
        return all(conforms(value[k], props[k]) for k in props)
    if kind == "array":
        return isinstance(value, list) and all(conforms(v, schema["items"]) for v in value)
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and schema.get("minimum", -np.inf) <= value <= schema.get("maximum", np.inf)
    if kind == "string":
        return isinstance(value, str)
    return True


@pytest.fixture(scope="module")
def server(truth):
    with SimulatedVLLM(truth=truth) as running:
        yield running


@pytest.fixture
def client(server):
    server.reset_stats(prompt_cache=True)
    server.faults.clear()
    with openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as sync_client:
        yield sync_client


# ---------------------------------------------------------------------- protocol
def test_models_schema_answers_n_and_usage(server, client, faces):
    assert server.base_url.startswith("http://127.0.0.1:") and server.port > 0
    assert [m.id for m in client.models.list()] == ["seke-sim-vllm"]
    fmt = label_schema()
    response = client.chat.completions.create(
        model="seke-sim-vllm", messages=ask("Label this face.", data_url(faces[3])), n=8, response_format=fmt
    )
    assert len(response.choices) == 8 and [c.index for c in response.choices] == list(range(8))
    for choice in response.choices:
        answer = json.loads(choice.message.content)
        assert conforms(answer, fmt["json_schema"]["schema"]), answer
        assert choice.finish_reason == "stop"
        assert answer["expression"] in answer["description"]
    usage = response.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    stats = server.stats()
    assert (stats["requests"], stats["completions"], stats["choices"]) == (1, 1, 8)
    assert stats["images"] == {"face/3": {"requests": 1, "choices": 8}}
    assert stats["prompt_tokens"] == usage.prompt_tokens and stats["completion_tokens"] == usage.completion_tokens


def test_restricted_enums_are_honoured(client, faces):
    candidates, au_subset = ["fear", "surprise"], ["AU1", "AU2", "AU26"]
    seen_expressions, seen_aus = set(), set()
    for i in (3, 10, 45, 90):  # a fear face, then faces of other expressions (answers must still be candidates)
        response = client.chat.completions.create(
            model="m",
            messages=ask("Fear or surprise?", data_url(faces[i])),
            n=16,
            temperature=1.5,
            response_format=label_schema(candidates, au_subset),
        )
        for choice in response.choices:
            answer = json.loads(choice.message.content)
            seen_expressions.add(answer["expression"])
            seen_aus.update(answer["action_units"])
    assert seen_expressions <= set(candidates) and seen_expressions
    assert seen_aus <= set(au_subset) and seen_aus


def test_temperature_zero_and_seed_are_deterministic(client, faces):
    url = data_url(faces[7])  # a hard face: samples at temperature 1 disagree
    greedy = [
        client.chat.completions.create(model="m", messages=ask("Label.", url), n=4, temperature=0,
                                       response_format=label_schema())
        for _ in range(2)
    ]  # fmt: skip
    contents = {c.message.content for r in greedy for c in r.choices}
    assert len(contents) == 1
    seeded = [
        client.chat.completions.create(model="m", messages=ask("Label.", url), n=8, seed=seed,
                                       response_format=label_schema())
        for seed in (11, 11, 12)
    ]  # fmt: skip
    first, again, other = ([c.message.content for c in r.choices] for r in seeded)
    assert first == again
    assert first != other
    assert len(set(first)) > 1  # choices of one request are distinct samples


def test_streaming_sends_the_same_answers_as_chunks(client, faces):
    kwargs = {"model": "m", "messages": ask("Label.", data_url(faces[9])), "n": 3, "seed": 5}
    whole = client.chat.completions.create(**kwargs, response_format=label_schema())
    parts, usage = {}, None
    for chunk in client.chat.completions.create(
        **kwargs, response_format=label_schema(), stream=True, stream_options={"include_usage": True}
    ):
        for choice in chunk.choices:
            parts[choice.index] = parts.get(choice.index, "") + (choice.delta.content or "")
        usage = chunk.usage or usage
    assert [parts[i] for i in range(3)] == [c.message.content for c in whole.choices]
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_json_object_needs_the_word_json_and_answers_the_asked_levels(client, faces):
    with pytest.raises(openai.BadRequestError, match="json"):
        client.chat.completions.create(
            model="m", messages=ask("What expression?", data_url(faces[0])), response_format={"type": "json_object"}
        )
    response = client.chat.completions.create(
        model="m",
        messages=ask("Reply in JSON with the valence and arousal.", data_url(faces[0])),
        response_format={"type": "json_object"},
    )
    answer = json.loads(response.choices[0].message.content)
    assert set(answer) == {"valence", "arousal", "description"}


def test_prose_with_answer_tag(client, faces):
    for template, check in (
        ("<answer>expression</answer>", lambda s: s in EXPRESSIONS),
        ("<answer>AU list</answer>", lambda s: s == "none" or all(a.strip() in AUS for a in s.split(","))),
        ("<answer>valence, arousal</answer>", lambda s: s.startswith("valence: ") and "arousal: " in s),
    ):
        response = client.chat.completions.create(
            model="m", messages=ask(f"Look at the face. Answer in the form {template}.", data_url(faces[1]))
        )
        content = response.choices[0].message.content
        assert content.count("<answer>") == 1, content
        assert check(content.split("<answer>")[1].split("</answer>")[0]), content
    plain = client.chat.completions.create(model="m", messages=ask("What emotion is shown?", data_url(faces[1])))
    assert "<answer>" not in plain.choices[0].message.content
    assert "Expression: " in plain.choices[0].message.content


def test_invalid_requests_get_openai_errors(client, faces):
    bad_strict = label_schema()
    del bad_strict["json_schema"]["schema"]["additionalProperties"]
    with pytest.raises(openai.BadRequestError, match="additionalProperties") as error:
        client.chat.completions.create(model="m", messages=ask("x", data_url(faces[0])), response_format=bad_strict)
    assert error.value.body["code"] == "invalid_json_schema"
    with pytest.raises(openai.BadRequestError, match="n"):
        client.chat.completions.create(model="m", messages=ask("x", data_url(faces[0])), n=129)
    with pytest.raises(openai.BadRequestError, match="unsupported image"):
        client.chat.completions.create(model="m", messages=ask("x", "data:image/jpeg;base64,bm90IGFuIGltYWdl"))
    with (  # a server started with a key refuses others
        SimulatedVLLM(api_key="right") as keyed,
        openai.OpenAI(base_url=keyed.base_url, api_key="wrong") as wrong_key,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong_key.models.list()


def test_unknown_face_is_answered_uncertainly_and_counted(server, client):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    response = client.chat.completions.create(
        model="m",
        messages=ask("Label.", data_url(PIL.Image.fromarray(noise))),
        n=16,
        seed=0,
        response_format=label_schema(),
    )
    votes = [json.loads(c.message.content)["expression"] for c in response.choices]
    assert len(set(votes)) >= 3  # a flat belief: no consensus
    stats = server.stats()
    assert stats["unknown_images"] == 1
    assert [key for key in stats["images"] if key.startswith("unknown/")] == list(stats["images"])


# ---------------------------------------------------------------------- provider modes
def test_structured_output_and_n_rejection_modes(truth, faces):
    with SimulatedVLLM(truth=truth, structured_output=False, max_n=1) as limited:
        with openai.OpenAI(base_url=limited.base_url, api_key="sim", max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as error:
                client.chat.completions.create(
                    model="m", messages=ask("Label.", data_url(faces[0])), response_format=label_schema()
                )
            assert error.value.body["param"] == "response_format"
            with pytest.raises(openai.BadRequestError) as error:
                client.chat.completions.create(model="m", messages=ask("Label.", data_url(faces[0])), n=4)
            assert error.value.body["param"] == "n" and error.value.body["code"] == "unsupported_value"
            response = client.chat.completions.create(model="m", messages=ask("Label.", data_url(faces[0])), n=1)
            assert response.choices[0].message.content
        stats = limited.stats()
    assert stats["faults"] == {"reject_response_format": 1, "reject_n": 1}
    assert stats["errors"] == {"400": 2} and stats["completions"] == 1


# ---------------------------------------------------------------------- faults
def test_rate_limit_carries_retry_after_and_is_retried(server, client, faces):
    server.set_faults(retry_after=0.05)
    try:
        server.inject("rate_limit")
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model="m", messages=ask("Label.", data_url(faces[0])))
        assert error.value.response.headers["retry-after"] == "1"
        assert error.value.response.headers["retry-after-ms"] == "50"
        server.inject("rate_limit", count=2)
        with openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=2) as retrying:
            response = retrying.chat.completions.create(model="m", messages=ask("Label.", data_url(faces[0])))
        assert response.choices[0].message.content
    finally:
        server.set_faults(retry_after=1.0)
    stats = server.stats()
    assert stats["faults"] == {"rate_limit": 3}
    assert stats["requests"] == 4 and stats["completions"] == 1 and stats["errors"] == {"429": 3}


def test_server_error_and_timeout(server, client, faces):
    server.inject("server_error")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=ask("Label.", data_url(faces[0])))
    server.set_faults(timeout_delay=1.0)
    try:
        server.inject("timeout")
        with pytest.raises(openai.APITimeoutError):
            client.with_options(timeout=0.2).chat.completions.create(
                model="m", messages=ask("Label.", data_url(faces[0]))
            )
        _wait_idle(server)  # the late answer is still being served after the client gave up
    finally:
        server.set_faults(timeout_delay=30.0)
    assert server.stats()["faults"] == {"server_error": 1, "timeout": 1}


def test_truncated_and_refused_choices(server, client, faces):
    server.inject("truncate")
    server.inject("refusal")
    response = client.chat.completions.create(
        model="m", messages=ask("Label.", data_url(faces[2])), n=4, response_format=label_schema()
    )
    truncated, refused, *good = response.choices
    assert truncated.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.message.content)
    assert refused.message.content is None and "sorry" in refused.message.refusal
    assert all(json.loads(c.message.content)["expression"] for c in good)
    assert server.stats()["faults"] == {"truncate": 1, "refusal": 1}


def test_fault_rates_and_control_endpoint(truth, faces):
    with SimulatedVLLM(truth=truth, server_error=0.3, fault_seed=1) as flaky:
        with openai.OpenAI(base_url=flaky.base_url, api_key="sim", max_retries=0) as client:
            failures = 0
            for _ in range(60):
                try:
                    client.chat.completions.create(model="m", messages=ask("x", data_url(faces[0])))
                except openai.InternalServerError:
                    failures += 1
        assert 8 <= failures <= 30  # 60 draws at rate 0.3: mean 18, sd 3.5
        assert flaky.stats()["faults"] == {"server_error": failures}
        control = _http(f"{flaky.url}/control/faults", {"inject": {"truncate": 2}, "plan": {"latency": 0}})
        assert control == (200, {"plan": control[1]["plan"], "queued": {"truncate": 2}})
        status, body = _http(f"{flaky.url}/control/faults", {"inject": {"nonsense": 1}})
        assert status == 400 and "nonsense" in body["error"]["message"]
        assert _http(f"{flaky.url}/stats/reset", {}) == (200, {"reset": True})
        assert _http(f"{flaky.url}/stats")[1]["requests"] == 0


def _http(url: str, payload: dict | None = None) -> tuple[int, dict]:
    """A plain HTTP call to the simulator's own endpoints (POST when there is a payload)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---------------------------------------------------------------------- concurrency
def _wait_idle(server: SimulatedVLLM, patience: float = 30.0) -> None:
    deadline = time.monotonic() + patience
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats()["in_flight"] == 0


def test_64_concurrent_async_requests(server, faces):
    _wait_idle(server)
    server.reset_stats()
    urls = [data_url(faces[i]) for i in range(64)]

    async def main():
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as client:
            server.pause()  # hold every request until all 64 are inside the server at once
            try:
                tasks = [
                    asyncio.create_task(
                        client.chat.completions.create(model="m", messages=ask("Label.", url), n=2,
                                                       response_format=label_schema())
                    )
                    for url in urls
                ]  # fmt: skip
                deadline = time.monotonic() + 60
                while server.stats()["in_flight"] < 64 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                held = server.stats()["in_flight"]
            finally:
                server.resume()
            return held, await asyncio.gather(*tasks)

    held, responses = asyncio.run(main())
    assert held == 64
    assert all(len(r.choices) == 2 for r in responses)
    stats = server.stats()
    assert stats["completions"] == 64 and stats["peak_in_flight"] == 64 and len(stats["images"]) == 64


# ---------------------------------------------------------------------- accounting
def test_image_tokens_and_prompt_caching(client):
    face = draw_face(5, expression="happiness", size=(1024, 1024))
    buffer = io.BytesIO()
    face.save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    high = client.chat.completions.create(model="m", messages=ask("Label.", url, detail="high"))
    low = client.chat.completions.create(model="m", messages=ask("Label.", url, detail="low"))
    assert high.usage.prompt_tokens - low.usage.prompt_tokens == (85 + 170 * 4) - 85  # 768x768: 2x2 tiles
    knowledge = "Facial action units and their meanings. " * 150  # a static system prompt of ~1200 tokens
    first = client.chat.completions.create(model="m", messages=ask("Label.", url, "low", system=knowledge))
    other_face = data_url(draw_face(6, expression="sadness"))
    second = client.chat.completions.create(model="m", messages=ask("Label.", other_face, "low", system=knowledge))
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached <= second.usage.prompt_tokens - 85
    assert (
        client.chat.completions.create(
            model="m", messages=ask("Label.", url, "low")
        ).usage.prompt_tokens_details.cached_tokens
        == 0
    )  # short prompts are never cached


# ---------------------------------------------------------------------- the noise model, measured over HTTP
def _label_all(server, faces, *, prompt="Label this face.", **params) -> list[list[dict]]:
    with openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as client:

        def one(i):
            text = prompt(i) if callable(prompt) else prompt
            response = client.chat.completions.create(  # seeded: the measured rates are reproducible
                model="m", messages=ask(text, data_url(faces[i])), response_format=label_schema(), seed=i, **params
            )
            return [json.loads(c.message.content) for c in response.choices]

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(len(faces))))


def test_empirical_error_rates_match_the_parameters(truth, faces):
    rates = {"expression_error": (0.05, 0.65), "au_miss": (0.05, 0.45), "au_false": (0.0, 0.2)}
    with SimulatedVLLM(truth=truth, vote_split=(0.0, 0.6), **rates) as server:
        greedy = [answers[0] for answers in _label_all(server, faces, temperature=0)]
        sampled = _label_all(server, faces, temperature=1.0, n=12)
    d = np.array([_difficulty(i) for i in range(N_FACES)])
    labels = [_face_labels(i) for i in range(N_FACES)]
    wrong = np.array([a["expression"] != t.expression for a, t in zip(greedy, labels, strict=True)])
    expected = 0.05 + 0.6 * d
    assert abs(wrong.mean() - expected.mean()) < 0.1  # 160 faces: sd of the mean ~0.035
    assert wrong[d < 0.3].mean() < wrong[d > 0.7].mean()

    # Samples of one face are correlated: easy faces answer unanimously, hard ones split, wrong beliefs repeat.
    top_share = np.array([max(map([a["expression"] for a in s].count, EXPRESSIONS)) / 12 for s in sampled])
    assert top_share[d == 0].min() == 1.0 and top_share[d < 0.1].mean() > 0.93
    assert abs(top_share[d > 0.8].mean() - (1 - 0.6 * d[d > 0.8]).mean()) < 0.15
    majority = [max(EXPRESSIONS, key=[a["expression"] for a in s].count) for s in sampled]
    agrees = np.array([m == g["expression"] for m, g in zip(majority, greedy, strict=True)])
    assert agrees[wrong].mean() > 0.6  # a confidently wrong belief wins the vote too

    # AU errors at temperature 0 (faces whose expression belief is right, so no wrong-prototype pull).
    misses = falses = actives = inactives = 0.0
    expected_miss = expected_false = 0.0
    for answer, label, di, w in zip(greedy, labels, d, wrong, strict=True):
        if w:
            continue
        said = set(answer["action_units"])
        misses += len(label.aus - said)
        falses += len(said - label.aus)
        actives += len(label.aus)
        inactives += len(AUS) - len(label.aus)
        expected_miss += len(label.aus) * (0.05 + 0.4 * di)
        expected_false += (len(AUS) - len(label.aus)) * 0.2 * di
    assert abs(misses / actives - expected_miss / actives) < 0.07
    assert abs(falses / inactives - expected_false / inactives) < 0.04


def test_valence_bias_survives_averaging_and_priors_help(truth, faces):
    with SimulatedVLLM(truth=truth, va_bias=(0.2, 0.2), va_noise=(0.1, 0.1)) as server:
        sampled = _label_all(server, faces[:60], n=16)

        def with_prior(i):
            return f"Label this face.\nexpression: {_face_labels(i).expression}"

        helped = _label_all(server, faces[:60], prompt=with_prior, temperature=0)
    errors = np.array([np.mean([a["valence"] for a in s]) - _face_labels(i).valence for i, s in enumerate(sampled)])
    # The mean of 16 samples keeps a per-face bias of sd ~0.2 (per-sample noise alone would leave 0.1/4 = 0.025).
    assert 0.12 < errors[np.abs(errors) < 0.9].std() < 0.3
    assert all(a[0]["expression"] == _face_labels(i).expression for i, a in enumerate(helped))
    au_errors = [len(set(a[0]["action_units"]) ^ _face_labels(i).aus) for i, a in enumerate(helped)]
    greedy_without = [s[0] for s in _label_all_greedy(truth, faces[:60])]
    au_errors_without = [len(set(a["action_units"]) ^ _face_labels(i).aus) for i, a in enumerate(greedy_without)]
    assert np.mean(au_errors) < np.mean(au_errors_without)


def _label_all_greedy(truth, faces):
    with SimulatedVLLM(truth=truth) as server:
        return _label_all(server, faces, temperature=0)


# ---------------------------------------------------------------------- the command line
@contextlib.contextmanager
def _cli(*args: str):
    """`seke-hf simulate ARGS` in a subprocess; yields its stdout lines up to the one saying where it serves."""
    command = [sys.executable, "-m", "seke_hf", "simulate", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or "serving" not in lines[-1]:
            lines.append(process.stdout.readline())
            assert lines[-1], f"the server exited: {lines}"
        yield lines
    finally:
        process.terminate()
        process.wait(timeout=10)


def _base_url(line: str) -> str:
    return line.split("serving ")[1].split(" ")[0]


def test_cli_serves_a_truth_file(tmp_path, truth):
    path = tmp_path / "truth.jsonl"
    truth.save(path)
    with _cli("--truth", str(path), "--port", "0", "--max-n", "1", "--noise", "expression_error=0.1,0.5") as lines:
        assert f"knows {N_FACES} faces" in lines[-1]
        with openai.OpenAI(base_url=_base_url(lines[-1]), api_key="sim", max_retries=0) as client:
            assert [m.id for m in client.models.list()] == ["seke-sim-vllm"]
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], n=2)


def test_cli_builds_the_truth_from_a_corpus(tmp_path):
    write_rafdb(tmp_path / "RAF-DB", n_train=6, n_test=3)
    saved = tmp_path / "truth.jsonl"
    with _cli(
        "--corpus", "rafdb", "--data-dir", str(tmp_path / "RAF-DB"), "--save-truth", str(saved), "--port", "0"
    ) as lines:
        assert lines[-2].startswith(f"wrote 9 truth entries to {saved}")
        aligned = tmp_path / "RAF-DB" / "basic" / "Image" / "aligned" / "train_00002_aligned.jpg"
        face = PIL.Image.open(aligned)
        base_url = _base_url(lines[-1])
        with openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0) as client:
            client.chat.completions.create(model="m", messages=ask("Label.", data_url(face, (50, 50))))
        stats = _http(base_url.removesuffix("/v1") + "/stats")[1]
    assert stats["images"] == {"rafdb/train_00002": {"requests": 1, "choices": 1}}
    assert len(TruthTable.load(saved)) == 9
