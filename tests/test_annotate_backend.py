"""ChatBackend over real HTTP: cache, retries, refusals, fallbacks, provider prompt caching, no stored secrets."""

from __future__ import annotations

import asyncio

from annotate_helpers import labelled

from seke_hf.annotate import ChatBackend, RequestCache, prompts
from seke_hf.llm import image_data_url
from seke_hf.simulate import SimulatedVLLM

SECRET = "sk-test-never-stored-0123456789"


def messages(image) -> list[dict]:
    return prompts.sampling_messages(prompts.system_prompt(), ("expression",), [], image_data_url(image))


def test_cache_retries_refusals_and_secrets(tmp_path):
    faces = labelled(2)
    cache = RequestCache(tmp_path / "requests.sqlite")
    fmt = prompts.response_format(("expression",))
    with SimulatedVLLM(truth=faces, retry_after=0.05, api_key=SECRET) as server:
        backend = ChatBackend("sim", server.base_url, SECRET, cache=cache, backoff=0.01)

        async def scenario():
            server.inject("rate_limit", 1)
            server.inject("refusal", 1)
            first = await backend.complete(messages(faces[0]["image"]), n=3, temperature=0.8, seed=1,
                                           response_format=fmt)  # fmt: skip
            again = await backend.complete(messages(faces[0]["image"]), n=3, temperature=0.8, seed=1,
                                           response_format=fmt)  # fmt: skip
            other = await backend.complete(messages(faces[1]["image"]), n=3, temperature=0.8, seed=1,
                                           response_format=fmt)  # fmt: skip
            await backend.aclose()
            return first, again, other

        first, again, other = asyncio.run(scenario())
        stats = server.stats()
        # A later run (a new backend on the same cache) pays for nothing, and says so.
        later = ChatBackend("sim", server.base_url, SECRET, cache=cache)
        replay = asyncio.run(later.complete(messages(faces[0]["image"]), n=3, temperature=0.8, seed=1,
                                            response_format=fmt))  # fmt: skip
    assert stats["errors"] == {"429": 1} and backend.tally.retries == 1
    # The repeat within the run is a re-read of this run's own answer, not a saving from an earlier run.
    assert stats["completions"] == 2 and backend.tally.reused == 1 and backend.tally.cache_hits == 0
    assert replay.from_cache and later.tally.cache_hits == 1 and later.tally.requests == 0
    assert not first.from_cache and again.from_cache
    assert again.choices == first.choices and again.refusals == first.refusals and again.usage == first.usage
    assert first.choices[0] is None and first.refusals[0]  # a refused choice: no content, the refusal text kept
    assert all(prompts.parse_sample(text).expression for text in first.choices[1:])
    # The static prefix (instructions, knowledge, schema) is cached by the provider from the second request on.
    assert first.usage.cached_tokens == 0 and other.usage.cached_tokens >= 1024
    assert backend.tally.usage.cached_tokens == other.usage.cached_tokens
    assert "cached by the provider" in backend.summary()
    cache.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert SECRET.encode() not in raw and len(RequestCache(tmp_path / "requests.sqlite")) == 2


def test_refused_n_becomes_parallel_single_choices(tmp_path):
    faces = labelled(1)
    with SimulatedVLLM(truth=faces, max_n=1) as server:
        backend = ChatBackend("sim", server.base_url, "x", cache=RequestCache(tmp_path / "c.sqlite"))

        async def draw():
            result = await backend.complete(messages(faces[0]["image"]), n=4, temperature=0.8, seed=7)
            await backend.aclose()
            return result

        completion = asyncio.run(draw())
        stats = server.stats()
    assert not backend.supports_n
    assert len(completion.choices) == 4 and completion.requests == 4
    assert stats["errors"] == {"400": 1} and stats["completions"] == 4 and stats["choices"] == 4
    assert all(prompts.parse_sample(text) is not None for text in completion.choices)
