"""One chat-completion request as a value: what is asked, how it is sampled, and the cache key it answers to.

    request = Request(messages, n=4, temperature=0.8, seed=7, response_format={...}, sample_round=0)
    request.key(model, endpoint)     # the request cache key (unchanged since the first cache was written)
    request.params(model)            # keyword arguments of `chat.completions.create`
    request.single_choices()         # `n` one-choice requests (seeds seed + i), for servers that refuse n > 1
    Request(messages, logprob_fields=("expression",))  # also keep how sure the model was of these JSON fields

Why a value: the client passes one request through its cache, fallbacks and retries, and each step may change one
thing about it (the response format, `n`) without re-threading the others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from seke_hf.llm.cache import request_key


@dataclass(frozen=True)
class Request:
    """A chat-completion request. `sample_round` is not sent: it tells apart, in the cache, rounds that would
    otherwise be the same request (an answer drawn at round 1 is not the answer of round 0)."""

    messages: list[dict[str, Any]]
    n: int = 1
    temperature: float = 0.0
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    sample_round: int = 0
    logprob_fields: tuple[str, ...] = ()
    """JSON fields of the answer whose token probabilities to keep (`seke_hf.llm.logprobs`); () asks for none."""
    top_logprobs: int = 5

    def key(self, model: str, endpoint: str) -> str:
        """The request cache key: the logical request, whichever fallback ends up answering it."""
        extra = {"logprob_fields": list(self.logprob_fields), "top_logprobs": self.top_logprobs}
        return request_key(
            {
                "model": model,
                "endpoint": endpoint,
                "messages": self.messages,
                "n": self.n,
                "temperature": self.temperature,
                "seed": self.seed,
                "response_format": self.response_format,
                "max_tokens": self.max_tokens,
                "sample_round": self.sample_round,
                **(extra if self.logprob_fields else {}),  # keys without logprobs are those of older caches
            }
        )

    def params(self, model: str) -> dict[str, Any]:
        """`chat.completions.create` keyword arguments; defaults are left out, so any server accepts them."""
        params: dict[str, Any] = {"model": model, "messages": self.messages, "temperature": self.temperature}
        if self.n != 1:
            params["n"] = self.n
        if self.seed is not None:
            params["seed"] = self.seed
        if self.response_format is not None:
            params["response_format"] = self.response_format
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.logprob_fields:
            params["logprobs"], params["top_logprobs"] = True, self.top_logprobs
        return params

    def single_choices(self) -> list[Request]:
        """`n` one-choice requests drawing the same choices (seeds `seed + i`, so they differ from each other)."""
        return [
            dataclasses.replace(self, n=1, seed=None if self.seed is None else self.seed + i) for i in range(self.n)
        ]

    def with_format(self, response_format: dict[str, Any] | None) -> Request:
        return dataclasses.replace(self, response_format=response_format)

    def without_logprobs(self) -> Request:
        """What is sent to a server that refuses logprobs (the cache key stays the logical request's)."""
        return dataclasses.replace(self, logprob_fields=())
