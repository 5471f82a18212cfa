"""The model layer moved (`seke_hf.annotate` -> `seke_hf.llm`) without moving a cache key or a fingerprint.

Every pinned value here was computed by the code before the move (commit c75ffe1): a request cache written then must
still answer now, without a request, and an annotator with unchanged settings must keep its `datasets` fingerprint
(else every `map` over it would run again). `data/llm_compat_main.json` holds the rows that code wrote into its
request cache for three faces (annotated by SV-UAMC, and asked the FEAB questions) and the outputs it produced.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
from annotate_helpers import hide_one_level, labelled
from datasets.fingerprint import Hasher

from seke_hf.annotate import SVUAMCAnnotator, prompts
from seke_hf.evaluate import run
from seke_hf.evaluate.runner import EvaluationSettings, _Asker
from seke_hf.evaluate.tasks import get_task
from seke_hf.llm import ChatBackend, Request, RequestCache, image_data_url, request_key
from seke_hf.simulate import SimulatedVLLM
from seke_hf.synthetic.faces import draw_face

OPENAI = "https://api.openai.com/v1"
PINNED = json.loads((Path(__file__).parent / "data" / "llm_compat_main.json").read_text())
"""Written by the pre-move code against the simulator at PINNED["endpoint"], where nothing listens now."""

SCHEMA = "CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
OLDEST_SCHEMA = "CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
"""The request cache's table as written before the move, and before timestamps were kept."""


def old_request_key(content: dict) -> str:
    """The key function as it was: sha256 of the canonical JSON of the logical request."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def old_cache(path: Path, rows: list[tuple[str, dict]], schema: str = SCHEMA) -> None:
    """A cache file the way the pre-move code wrote it: WAL, one JSON value per key."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(schema)
    for key, value in rows:
        cells = (key, json.dumps(value, ensure_ascii=False)) + ((time.time(),) if "created" in schema else ())
        conn.execute(f"INSERT INTO responses VALUES ({', '.join('?' * len(cells))})", cells)
    conn.close()


def svuamc_request() -> Request:
    levels, known = ("expression", "aus"), ["valence: 0.10", "arousal: -0.20"]
    messages = prompts.sampling_messages(prompts.system_prompt(), levels, known, "data:image/jpeg;base64,AAAA")
    return Request(messages, n=4, temperature=0.8, seed=7, response_format=prompts.response_format(levels))


def test_request_keys_are_the_pinned_digests():
    request = svuamc_request()
    as_before = old_request_key({"model": "gpt-4o", "endpoint": OPENAI, "messages": request.messages, "n": 4,
                                 "temperature": 0.8, "seed": 7, "response_format": request.response_format,
                                 "max_tokens": None, "sample_round": 0})  # fmt: skip
    assert request.key("gpt-4o", OPENAI) == as_before
    assert as_before == "e3148d0cff0eb5c99a18e5a9b9897835ca110fcb078896b8ab7aa23f2db02d85"
    # A FEAB question, as the evaluator asks it, and its remembered answer-format probe.
    task = get_task("aus")
    question = Request(
        task.messages("data:image/jpeg;base64,AAAA", "json_schema"),
        temperature=0.0,
        seed=0,
        response_format=task.response_format("json_schema"),
    )
    assert question.key("gpt-4o", OPENAI) == "76d1c7a7d1aef0c9478f2b719f670b27d91ea011153e8f4980c9a9cb6b2a9862"
    backend = ChatBackend("gpt-4o", OPENAI)
    memo = _Asker(backend, None, EvaluationSettings("gpt-4o"))._format_memo_key()
    assert memo == request_key({"seke_hf.evaluate": "answer_format", "model": "gpt-4o", "endpoint": OPENAI})
    assert memo == "a453dc9dc0e9644c5a1270bada02fb0600fc1b4c961efa36f9c3592b0794dd99"


def test_images_encode_to_the_pinned_bytes():
    """The data URL is inside every key: the one encoder gives the bytes both old encoders gave."""
    image = draw_face(3, "happiness", size=(64, 64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert hashlib.sha256(buffer.getvalue()).hexdigest().startswith("ba7c647830504aab")  # the same input image
    for cell in ({"bytes": buffer.getvalue(), "path": None}, image):
        digest = hashlib.sha256(image_data_url(cell, 512).encode()).hexdigest()
        assert digest == "52e68cc1980937fa291043f25b02a470c762d1c95538fe2a6a38b02225784a0f"
    downscaled = hashlib.sha256(image_data_url(image, 32).encode()).hexdigest()
    assert downscaled == "ded89492fc89d367b8e3bff265cbe215f1bc134c7789d624b9c1cc18257d2d3a"


@pytest.mark.parametrize("schema", [SCHEMA, OLDEST_SCHEMA], ids=["created", "before-timestamps"])
def test_a_cache_written_before_the_move_answers_without_a_request(tmp_path, schema):
    faces = labelled(1)
    url = image_data_url(faces[0]["image"])
    messages = prompts.sampling_messages(prompts.system_prompt(), ("expression",), [], url)
    stored = {"choices": ['{"expression": "fear"}', None], "refusals": [None, "no"], "requests": 1,
              "usage": {"prompt_tokens": 1200, "completion_tokens": 9, "cached_tokens": 1024}}  # fmt: skip
    with SimulatedVLLM(truth=faces) as server:
        key = old_request_key({"model": "sim", "endpoint": server.base_url, "messages": messages, "n": 2,
                               "temperature": 0.8, "seed": 1, "response_format": None, "max_tokens": None,
                               "sample_round": 0})  # fmt: skip
        old_cache(tmp_path / "requests.sqlite", [(key, stored)], schema)
        backend = ChatBackend("sim", server.base_url, "x", cache=RequestCache(tmp_path / "requests.sqlite"))

        async def ask():
            completion = await backend.complete(messages, n=2, temperature=0.8, seed=1)
            await backend.aclose()
            return completion

        completion = asyncio.run(ask())
        stats = server.stats()
    assert stats["requests"] == 0 and backend.tally.requests == 0 and backend.tally.cache_hits == 1
    assert completion.from_cache and completion.choices == stored["choices"] and completion.refusals == [None, "no"]
    assert completion.usage.cached_tokens == 1024 and completion.requests == 1


def test_an_annotation_cached_before_svuamc_2_is_not_replayed_as_its_answers(tmp_path):
    """SV-UAMC 2 (issue 14) asks other requests (label-only votes, a greedy answer): answers cached by version 1 are
    never mistaken for them. Nothing listens at the pinned endpoint: every row fails, none is silently re-used."""
    old_cache(tmp_path / "requests.sqlite", [tuple(row) for row in PINNED["annotate"]["rows"]])
    annotator = SVUAMCAnnotator(model="sim", base_url=PINNED["endpoint"], api_key="x", cache_dir=tmp_path,
                                max_retries=0, progress=False)  # fmt: skip
    out = hide_one_level(labelled(3)).map(annotator, batched=True, batch_size=8)
    assert annotator.backend.tally.cache_hits == 0
    annotator.close()
    assert out["status"] == ["failed"] * 3


def test_an_evaluation_cached_before_the_move_replays_to_the_same_predictions(tmp_path):
    old_cache(tmp_path / "requests.sqlite", [tuple(row) for row in PINNED["evaluate"]["rows"]])
    result = run(labelled(3), "sim", PINNED["endpoint"], cache_dir=tmp_path, max_retries=0, progress=False)
    assert result.info["requests"] == 0 and result.info["cache_hits"] == 9
    assert result.predictions == PINNED["evaluate"]["predictions"]
    assert json.loads(json.dumps(result.scores)) == PINNED["evaluate"]["scores"]


def test_the_annotator_keeps_its_pinned_fingerprint(monkeypatch):
    """Pinned at SV-UAMC 3 / prompts 3 (logprobs and their weight in the config; before: fdc12345e2097dc1 at
    SV-UAMC 2, f709657f2fdf89b3 at SV-UAMC 1)."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert Hasher.hash(SVUAMCAnnotator()) == "e711ba30788872a6"
    custom = SVUAMCAnnotator(model="m", base_url="http://127.0.0.1:1/v1", min_samples=2, max_samples=6,
                             temperature=0.7, seed=3, api_key="k", max_concurrency=4)  # fmt: skip
    assert Hasher.hash(custom) == "404b1f2f02b6dac4"
