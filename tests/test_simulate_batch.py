"""The simulator's Batch API (`/v1/files`, `/v1/batches`) driven by the official `openai` client over real HTTP, and
the hardening of its control endpoints and body limit."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import urllib.error
import urllib.request

import openai
import PIL.Image
import pytest

from seke_hf.simulate import Labels, SimulatedVLLM, TruthTable
from seke_hf.simulate.batches import BATCH_PRICES
from seke_hf.synthetic.faces import draw_face

EXPRESSIONS = ["happiness", "sadness", "anger", "surprise", "fear", "disgust"]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "face",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"expression": {"type": "string", "enum": EXPRESSIONS}, "description": {"type": "string"}},
            "required": ["expression", "description"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def faces() -> list[PIL.Image.Image]:
    return [draw_face(2000 + i, expression=e, size=(64, 64)) for i, e in enumerate(EXPRESSIONS)]


@pytest.fixture(scope="module")
def truth(faces) -> TruthTable:
    table = TruthTable()
    for i, (face, expression) in enumerate(zip(faces, EXPRESSIONS, strict=True)):
        table.add(f"face/{i}", Labels(expression, 0.0, 0.0, frozenset()), face, 0.3)
    return table


def _url(face: PIL.Image.Image) -> str:
    buffer = io.BytesIO()
    face.convert("RGB").save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def body(face: PIL.Image.Image, seed: int, n: int = 3) -> dict:
    content = [{"type": "text", "text": "Label this face."}, {"type": "image_url", "image_url": {"url": _url(face)}}]
    return {
        "model": "seke-sim-vllm",
        "messages": [{"role": "user", "content": content}],
        "n": n,
        "temperature": 0.8,
        "seed": seed,
        "response_format": SCHEMA,
    }


def jsonl(faces, count: int | None = None) -> bytes:
    lines = [
        {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body(face, seed=i)}
        for i, face in enumerate(faces[:count])
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def submit(client: openai.OpenAI, data: bytes) -> str:
    uploaded = client.files.create(file=("requests.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"k": "v"}
    )
    assert batch.status == "validating" and batch.input_file_id == uploaded.id and batch.metadata == {"k": "v"}
    return batch.id


def wait(client: openai.OpenAI, batch_id: str, timeout: float = 20.0) -> tuple[openai.types.Batch, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch, seen
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.02)


def lines(client: openai.OpenAI, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    text = client.files.content(file_id).text
    return {line["custom_id"]: line for line in map(json.loads, text.splitlines())}


@pytest.fixture
def server(truth):
    with SimulatedVLLM(truth=truth, batch_delay=0.6) as running:
        yield running


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as sync_client:
        yield sync_client


def test_batch_round_trip_answers_like_online(server, client, faces):
    batch_id = submit(client, jsonl(faces))
    batch, seen = wait(client, batch_id)
    assert seen[0] == "validating" and "in_progress" in seen and seen[-1] == "completed"
    assert batch.request_counts.total == 6 and batch.request_counts.completed == 6 and batch.request_counts.failed == 0
    assert batch.error_file_id is None and batch.model == "seke-sim-vllm"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    output = lines(client, batch.output_file_id)
    assert sorted(output) == [f"req-{i}" for i in range(6)]
    batch_stats = server.stats()["batch"]
    assert server.stats()["requests"] == 0  # batch lines are not online requests
    for i, face in enumerate(faces):
        line = output[f"req-{i}"]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"].startswith("req_")
        online = client.chat.completions.create(**body(face, seed=i))
        assert [c["message"]["content"] for c in line["response"]["body"]["choices"]] == [
            c.message.content for c in online.choices
        ]
        assert json.loads(online.choices[0].message.content)["expression"] in EXPRESSIONS
    # usage on the batch object and in /stats, priced at batch prices (half of GPT-4o online)
    assert batch.usage.input_tokens == batch_stats["prompt_tokens"] > 0
    assert batch.usage.output_tokens == batch_stats["completion_tokens"] > 0
    assert batch_stats["batches"] == {"completed": 1} and batch_stats["requests"] == 6
    expected = BATCH_PRICES.cost(batch.usage.input_tokens, batch_stats["cached_tokens"], batch.usage.output_tokens)
    assert batch_stats["cost_usd"] == pytest.approx(expected, abs=1e-6) and batch_stats["prices"]["input"] == 1.25
    online_stats = server.stats()
    assert online_stats["requests"] == 6 and online_stats["prompt_tokens"] == batch_stats["prompt_tokens"]
    # files: retrieve, list, delete; batches: list
    output_file = client.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output" and output_file.bytes == len(
        client.files.content(output_file.id).content
    )
    assert batch_id in [b.id for b in client.batches.list()]
    assert client.files.delete(batch.input_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(batch.input_file_id)
    server.reset_stats()
    assert server.stats()["batch"]["requests"] == 0


def test_validation_failures(server, client, faces):
    server.inject("batch_validation")
    batch, seen = wait(client, submit(client, jsonl(faces, 2)))
    assert seen[-1] == "failed" and batch.errors.data[0].code == "token_limit_exceeded" and batch.failed_at
    assert batch.output_file_id is None and server.stats()["batch"]["faults"] == {"batch_validation": 1}
    good = json.loads(jsonl(faces, 1))
    bad = "\n".join(
        [
            json.dumps(good),
            "{not json",
            json.dumps(good),
            json.dumps({**good, "custom_id": "x", "url": "/v1/embeddings"}),
        ]
    )
    batch, _ = wait(client, submit(client, bad.encode()))
    assert batch.status == "failed"
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "invalid_json"),
        (3, "duplicate_custom_id"),
        (4, "mismatched_endpoint"),
    ]
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=batch.input_file_id, endpoint="/v1/chat/completions", completion_window="1h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_provider_limits(truth, faces):
    with (
        SimulatedVLLM(truth=truth, batch_max_requests=3, batch_max_bytes=16_000) as limited,
        openai.OpenAI(base_url=limited.base_url, api_key="sim", max_retries=0) as client,
    ):
        data = jsonl(faces)
        assert len(data) > 16_000 > len(jsonl(faces, 4))
        with pytest.raises(openai.BadRequestError, match="too large"):
            client.files.create(file=("big.jsonl", data), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="jsonl"):
            client.files.create(file=("requests.json", jsonl(faces, 1)), purpose="batch")
        batch, _ = wait(client, submit(client, jsonl(faces, 4)))
        assert batch.status == "failed" and batch.errors.data[0].code == "request_limit_exceeded"
        batch, _ = wait(client, submit(client, jsonl(faces, 3)))
        assert batch.status == "completed" and batch.request_counts.completed == 3


def test_expired_half_done_and_failed_lines(server, client, faces):
    server.inject("batch_expire")
    batch, seen = wait(client, submit(client, jsonl(faces)))
    assert seen[-1] == "expired" and batch.expired_at
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 3)
    output, errors = lines(client, batch.output_file_id), lines(client, batch.error_file_id)
    assert sorted(output) == ["req-0", "req-1", "req-2"] and sorted(errors) == ["req-3", "req-4", "req-5"]
    assert {e["error"]["code"] for e in errors.values()} == {"batch_expired"}
    assert all(e["response"] is None for e in errors.values())

    server.inject("batch_line_error", 2)
    batch, _ = wait(client, submit(client, jsonl(faces)))
    assert batch.status == "completed" and (batch.request_counts.completed, batch.request_counts.failed) == (4, 2)
    errors = lines(client, batch.error_file_id)
    assert sorted(errors) == ["req-0", "req-1"]
    assert errors["req-0"]["response"]["status_code"] == 500 and errors["req-0"]["error"] is None
    assert errors["req-0"]["response"]["body"]["error"]["type"] == "server_error"
    assert sorted(lines(client, batch.output_file_id)) == [f"req-{i}" for i in range(2, 6)]


def test_cancel_keeps_what_was_answered(truth, faces):
    with (
        SimulatedVLLM(truth=truth, batch_delay=3.0) as slow,
        openai.OpenAI(base_url=slow.base_url, api_key="sim", max_retries=0) as client,
    ):
        batch_id = submit(client, jsonl(faces))
        while client.batches.retrieve(batch_id).request_counts.completed < 2:
            time.sleep(0.02)
        cancelling = client.batches.cancel(batch_id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at
        batch, _ = wait(client, batch_id)
        assert batch.status == "cancelled" and batch.cancelled_at
        answered = lines(client, batch.output_file_id)
        assert 2 <= len(answered) < 6 and len(answered) == batch.request_counts.completed
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(batch_id)


def _raw(url: str, method: str = "GET", data: bytes | None = None, key: str | None = None) -> int:
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_control_stats_and_batch_routes_need_the_key(truth, faces):
    with SimulatedVLLM(truth=truth, api_key="right") as keyed:
        url = keyed.url
        control = json.dumps({"inject": {"server_error": 5}}).encode()
        assert _raw(f"{url}/control/faults", "POST", control) == 401
        assert _raw(f"{url}/control/faults", "POST", control, key="wrong") == 401
        assert keyed.faults.queued() == {}
        assert _raw(f"{url}/control/faults") == 401
        assert _raw(f"{url}/stats/reset", "POST", b"{}") == 401
        assert _raw(f"{url}/stats", "DELETE") == 401
        assert _raw(f"{url}/v1/batches") == 401 and _raw(f"{url}/v1/files") == 401
        assert _raw(f"{url}/health") == 200
        assert _raw(f"{url}/control/faults", "POST", control, key="right") == 200
        assert keyed.faults.queued() == {"server_error": 5}
        assert _raw(f"{url}/stats/reset", "POST", b"{}", key="right") == 200
        with (
            openai.OpenAI(base_url=keyed.base_url, api_key="wrong", max_retries=0) as wrong,
            pytest.raises(openai.AuthenticationError),
        ):
            wrong.files.create(file=("r.jsonl", jsonl(faces, 1)), purpose="batch")
        with openai.OpenAI(base_url=keyed.base_url, api_key="right", max_retries=0) as right:
            assert right.files.create(file=("r.jsonl", jsonl(faces, 1)), purpose="batch").purpose == "batch"


@pytest.mark.parametrize("length", ["-1", "-600000000", "abc", str(10**12)])
def test_bad_content_length_is_refused_without_reading(server, length):
    """Before the fix a negative length read the socket to its end (600 MB streamed -> 2 GB of memory). Now the
    answer comes at once, with the body still unsent, and the connection is closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode() + b"x" * 4096)  # the body keeps coming; the server must not wait for its end
        reply = sock.recv(65536).decode()
        status = int(reply.split()[1])
        assert status == (413 if length.isdigit() else 400)
        rest = b""
        while chunk := sock.recv(65536):  # the server closes: a huge upload cannot continue on this connection
            rest += chunk
    assert server.stats()["requests"] == 0
