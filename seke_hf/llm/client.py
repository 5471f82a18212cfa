"""OpenAI-compatible chat completions: concurrency, retries, fallbacks, caching, usage and cost.

API (shared by the SV-UAMC annotator and the FEAB evaluator)::

    backend = ChatBackend(model="gpt-4o", base_url=None, api_key=None,  # None: OPENAI_BASE_URL / OPENAI_API_KEY
                          max_concurrency=32, timeout=60.0, max_retries=6, backoff=1.0, max_backoff=60.0,
                          cache=RequestCache() or None, prices=Prices())
    completion = await backend.complete(messages, n=4, temperature=0.8, seed=None,
                                        response_format={"type": "json_schema", ...}, sample_round=0,
                                        max_tokens=None)
    completion = await backend.send(Request(messages, n=4, ...))  # the same, with the request as a value
    completion.choices      # list[str | None]: one text per choice drawn, None for a choice without content
    completion.refusals     # list[str | None]: each choice's `message.refusal` (structured-output refusals)
    completion.logprobs     # list[dict[str, ValueLogprob]]: per choice, how sure the model was of each field of
                            # `request.logprob_fields` ({} when not asked, or the server gives none)
    completion.usage        # Usage(prompt_tokens, completion_tokens, cached_tokens)
    completion.requests     # HTTP requests this answer took (n single-choice requests where `n` is refused)
    completion.from_cache   # True when read from the cache (nothing sent)
    backend.tally           # Tally: requests sent, cache hits, retries, failures, tokens; tally.cost(prices)
    backend.summary()       # one log line: requests, tokens (cached), estimated cost
    backend.fetched_since(t)  # Tally of the answers fetched since time.time() t by every process sharing the cache
    backend.gate = Budget(...)  # a SendGate asked before every send: a budget, or a batch run collecting requests
    backend.remember(key, completion)  # store an answer obtained by the Batch API, as if fetched
    await backend.aclose()

`complete` raises `RequestFailed` when a request still fails after `max_retries` retries (429 and 5xx answers,
timeouts, connection errors; `retry-after-ms` / `retry-after` headers are honoured, else exponential backoff with
jitter). Nothing failed is cached, so a later run retries it.

Fallbacks, remembered for the backend's lifetime: a server that rejects `n > 1` gets `n` parallel single-choice
requests (seeds `seed + i`); one that rejects `json_schema` gets `json_object`, then no `response_format` (the
caller parses tolerantly); one that rejects `logprobs` is asked without them (the answers then carry none). The
cache key is the logical request (model, endpoint, messages, n, temperature, seed,
response_format, sample_round), so a cached answer is found whichever fallback produced it. The API key is never
part of a key or a value.

The backend is picklable: the client is dropped and re-created lazily (an `AsyncOpenAI` client belongs to one event
loop, so it is also re-created when the loop changes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import openai

from seke_hf.llm.cache import RequestCache
from seke_hf.llm.logprobs import ValueLogprob, field_logprobs
from seke_hf.llm.request import Request
from seke_hf.llm.usage import Prices, Tally, Usage

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_FORMAT_LEVELS = ("json_schema", "json_object", "none")
"""Response formats from the most to the least structured; a refusal moves one step down."""


@dataclass
class Completion:
    """The answer to one `Request`: a text (or None) and a refusal (or None) per choice, its tokens and cost in
    HTTP requests (`n` where the server refused `n` > 1), and whether it came from the cache."""

    choices: list[str | None]
    usage: Usage = field(default_factory=Usage)
    requests: int = 1
    from_cache: bool = False
    refusals: list[str | None] = field(default_factory=list)
    logprobs: list[dict[str, ValueLogprob]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.refusals) != len(self.choices):
            self.refusals = [None] * len(self.choices)
        if len(self.logprobs) != len(self.choices):
            self.logprobs = [{} for _ in self.choices]


class RequestFailed(RuntimeError):
    """A request that still failed after retries (or was rejected outright)."""


class ChatBackend:
    """Asynchronous, cached, retrying chat completions against any OpenAI-compatible endpoint."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_concurrency: int = 32,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        cache: RequestCache | None = None,
        prices: Prices | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cache = cache
        self.prices = prices or Prices()
        self.tally = Tally()
        self.supports_n = True
        self.schema_support = "json_schema"  # then "json_object", then "none"
        self.supports_logprobs = True
        self._client: openai.AsyncOpenAI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Task[Completion]] = {}
        self._fetched: set[str] = set()  # keys this process sent, so re-reading them is not counted as a saving
        self._unreachable_reported = False
        self.gate: SendGate | None = None

    # -- pickling: configuration only ------------------------------------------------------------------------------
    _RUNTIME = ("_client", "_loop", "_semaphore", "_inflight", "_fetched", "_unreachable_reported", "gate")

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._RUNTIME}
        state["tally"] = Tally()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = self._loop = self._semaphore = None
        self._inflight = {}
        self._fetched = set()
        self._unreachable_reported = False
        self.gate = None

    @property
    def endpoint(self) -> str:
        """The base URL requests go to (part of every cache key: two servers are two models)."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    def _runtime(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = openai.AsyncOpenAI(
                api_key=self.resolved_api_key(), base_url=self.endpoint, timeout=self.timeout, max_retries=0
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._inflight = {}
            self._loop = loop
        return self._client, self._semaphore

    def resolved_api_key(self) -> str:
        """The key to send: the one given, else OPENAI_API_KEY; local servers (vLLM, the simulator) need none."""
        api_key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if api_key:
            return api_key
        if self.base_url or os.environ.get("OPENAI_BASE_URL"):
            return "EMPTY"
        raise RequestFailed("no API key: pass api_key=... or set OPENAI_API_KEY")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._loop = self._semaphore = None

    # -- the public call -------------------------------------------------------------------------------------------
    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        n: int = 1,
        temperature: float = 0.0,
        seed: int | None = None,
        response_format: dict[str, Any] | None = None,
        sample_round: int = 0,
        max_tokens: int | None = None,
    ) -> Completion:
        """`n` choices for `messages`: `send` of the `Request` these arguments describe."""
        return await self.send(
            Request(messages, n, temperature, seed, response_format, max_tokens=max_tokens, sample_round=sample_round)
        )

    async def send(self, request: Request) -> Completion:
        """The answer to `request`, from the cache if this exact request was answered before.

        An identical request already in flight on this backend is joined, not sent again (duplicate images in a
        dataset, or `SVUAMCAnnotator.prefetch` running ahead of `map`).
        """
        key = request.key(self.model, self.endpoint)
        self._runtime()  # binds the in-flight table to this event loop
        running = self._inflight.get(key)
        if running is not None:
            shared = await asyncio.shield(running)
            self.tally.reused += 1
            return dataclasses.replace(shared, from_cache=True)
        task = asyncio.ensure_future(self._complete(key, request))
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._inflight.pop(key) if self._inflight.get(key) is done else None)
        return await task

    async def _complete(self, key: str, request: Request) -> Completion:
        if self.cache is not None:
            stored = await asyncio.to_thread(self.cache.get, key)
            completion = _stored_completion(stored) if stored is not None else None
            if completion is not None:
                if key in self._fetched:
                    self.tally.reused += 1
                else:
                    self.tally.cache_hits += 1
                    self.tally.cached_usage += completion.usage
                return completion
        ticket = self.gate.before_send(key, request) if self.gate is not None else None  # may refuse: raises
        try:
            completion = await self._fetch(request)
        except BaseException:
            if self.gate is not None:
                self.gate.after_send(ticket, None)
            raise
        if self.gate is not None:
            self.gate.after_send(ticket, completion.usage)
        self._fetched.add(key)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put, key, _cache_value(completion))
        return completion

    def remember(self, key: str, completion: Completion) -> None:
        """Store an answer obtained another way (a Batch API result) as if this backend had fetched it."""
        if self.cache is not None:
            self.cache.put(key, _cache_value(completion))
        self._fetched.add(key)
        self.tally.requests += completion.requests
        self.tally.choices += len(completion.choices)
        self.tally.usage += completion.usage

    def wire_params(self, request: Request) -> dict[str, Any]:
        """The `chat.completions.create` arguments this backend would send for `request` now (with the response
        format it fell back to, if any): the body of a Batch API line."""
        return self._as_sent(request).params(self.model)

    def fetched_since(self, timestamp: float) -> Tally:
        """Requests, choices and tokens of the answers stored in the cache since `timestamp`, by any process (the
        workers of `Dataset.map(num_proc=...)` included). Retries and failures are not stored, so they count 0."""
        tally = Tally()
        if self.cache is not None:
            for value in self.cache.values_since(timestamp):
                if (completion := _stored_completion(value, quiet=True)) is not None:
                    tally.requests += completion.requests
                    tally.choices += len(completion.choices)
                    tally.usage += completion.usage
        return tally

    def summary(self, tally: Tally | None = None) -> str:
        """One line for the logs: this process's tally, or the one given."""
        t = tally or self.tally
        return (
            f"{t.requests} requests sent ({t.choices} choices, {t.retries} retries, {t.failures} failed), "
            f"{t.cache_hits} answered from cache; tokens: {t.usage.prompt_tokens} prompt "
            f"({t.usage.cached_tokens} cached by the provider), {t.usage.completion_tokens} completion; "
            f"estimated cost {self.prices.format(t.cost(self.prices), 4)}"
            + (f" at {self.prices.describe()}" if self.prices.known else "")
        )

    # -- fallbacks -------------------------------------------------------------------------------------------------
    async def _fetch(self, request: Request) -> Completion:
        while True:
            # What this attempt sends; another task may learn a fallback meanwhile, so compare against this.
            multi_n, support = request.n > 1 and self.supports_n, self.schema_support
            sent = self._as_sent(request)
            try:
                if request.n > 1 and not multi_n:
                    parts = await asyncio.gather(*(self._request(single) for single in sent.single_choices()))
                    usage = Usage()
                    for part in parts:
                        usage += part.usage
                    return Completion(
                        [c for p in parts for c in p.choices],
                        usage,
                        requests=sum(p.requests for p in parts),
                        refusals=[r for p in parts for r in p.refusals],
                        logprobs=[lp for p in parts for lp in p.logprobs],
                    )
                return await self._request(sent)
            except openai.BadRequestError as e:
                format_sent = support if sent.response_format is not None else None
                if not self._fall_back(e, multi_n, format_sent, bool(sent.logprob_fields)):
                    self.tally.failures += 1
                    raise RequestFailed(f"request rejected: {_error_text(e)}") from e

    def _as_sent(self, request: Request) -> Request:
        """`request` without what this server was found to refuse (the response format degraded, no logprobs)."""
        sent = request.with_format(self._degrade_format(request.response_format))
        return sent if self.supports_logprobs else sent.without_logprobs()

    def _degrade_format(self, response_format: dict[str, Any] | None) -> dict[str, Any] | None:
        if response_format is None or response_format.get("type") != "json_schema":
            return response_format if self.schema_support != "none" else None
        return {"json_schema": response_format, "json_object": {"type": "json_object"}, "none": None}[
            self.schema_support
        ]

    def _fall_back(
        self, error: openai.BadRequestError, sent_multi_n: bool, sent_support: str | None, sent_logprobs: bool
    ) -> bool:
        """Learn from a 400 which feature the server refuses; True if a retry without it is worth making."""
        text = _error_text(error).lower()
        param = str(getattr(error, "param", None) or "").lower()
        if sent_logprobs and (param in ("logprobs", "top_logprobs") or "logprob" in text):
            if self.supports_logprobs:
                logger.warning("server refuses logprobs (%s): asking without them", text)
                self.supports_logprobs = False
            return True
        if sent_multi_n and (param == "n" or "'n'" in text or "multiple choices" in text):
            if self.supports_n:
                logger.warning("server refuses n > 1 (%s): falling back to parallel single-choice requests", text)
                self.supports_n = False
            return True
        mentions_format = param.startswith("response_format") or any(
            w in text for w in ("response_format", "json_schema", "structured output", "json_object")
        )
        if mentions_format and sent_support in _FORMAT_LEVELS[:-1]:
            lower = _FORMAT_LEVELS[_FORMAT_LEVELS.index(sent_support) + 1]
            if _FORMAT_LEVELS.index(self.schema_support) < _FORMAT_LEVELS.index(lower):
                logger.warning("server refuses the response format (%s): falling back to %s", text, lower)
                self.schema_support = lower
            return True
        return False

    # -- one HTTP request with retries -----------------------------------------------------------------------------
    async def _request(self, request: Request) -> Completion:
        client, semaphore = self._runtime()
        params = request.params(self.model)
        attempt = 0
        while True:
            try:
                async with semaphore:
                    self.tally.requests += 1
                    response = await client.chat.completions.create(**params)
                break
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError, openai.ConflictError) as e:  # fmt: skip
                if attempt >= self.max_retries:
                    self.tally.failures += 1
                    raise RequestFailed(f"gave up after {attempt + 1} attempts: {_error_text(e)}") from e
                if isinstance(e, openai.APIConnectionError) and not self._unreachable_reported:
                    self._unreachable_reported = True  # said once, at the first failed attempt, not after the last
                    logger.warning(
                        "cannot reach %s (%s): retrying each request up to %d times before giving up",
                        self.endpoint,
                        _error_text(e),
                        self.max_retries,
                    )
                delay = self._retry_delay(e, attempt)
                logger.debug("retrying in %.2fs after %s", delay, _error_text(e))
                attempt += 1
                self.tally.retries += 1
                await asyncio.sleep(delay)
        choices = sorted(response.choices or [], key=lambda c: c.index)
        texts = [c.message.content if c.message is not None else None for c in choices]
        refusals = [getattr(c.message, "refusal", None) if c.message is not None else None for c in choices]
        usage = _usage(response.usage)
        self.tally.choices += len(texts)
        self.tally.usage += usage
        # A choice cut short (finish_reason "length") is an incomplete answer: it has no content. When every choice
        # is, the request failed: never cached as an answer, asked again by the next run.
        cut = [getattr(c, "finish_reason", None) == "length" for c in choices]
        if cut and all(cut):
            self.tally.failures += 1
            raise RequestFailed(
                f"every choice was truncated (finish_reason 'length', {usage.completion_tokens} completion tokens): "
                "an incomplete answer is not cached; raise max_tokens if the server's limit is too low"
            )
        texts = [None if was_cut else text for text, was_cut in zip(texts, cut, strict=True)]
        logprobs = [choice_logprobs(c, text, request.logprob_fields) for c, text in zip(choices, texts, strict=True)]
        return Completion(texts, usage, requests=1, refusals=refusals, logprobs=logprobs)

    def _retry_delay(self, error: Exception, attempt: int) -> float:
        response = getattr(error, "response", None)
        hinted = _retry_after(response.headers) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_backoff)
        return min(self.backoff * 2**attempt, self.max_backoff) * (0.5 + random.random() / 2)


class SendGate(Protocol):
    """Asked on every cache miss before anything is sent (a budget, or a batch run collecting requests)."""

    def before_send(self, key: str, request: Request) -> Any:
        """Return a ticket for `after_send`, or raise `RequestFailed` to send nothing."""

    def after_send(self, ticket: Any, usage: Usage | None) -> None:
        """The request's usage, or None when it failed (nothing was paid)."""


def choice_logprobs(choice: Any, text: str | None, fields: tuple[str, ...]) -> dict[str, ValueLogprob]:
    """The `ValueLogprob` of each of `fields` in one response choice (an SDK object or a dict), {} if none."""
    if not fields or text is None:
        return {}
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else getattr(choice, "logprobs", None)
    content = logprobs.get("content") if isinstance(logprobs, dict) else getattr(logprobs, "content", None)
    return field_logprobs(text, content, fields)


def _cache_value(completion: Completion) -> dict[str, Any]:
    value = {
        "choices": completion.choices,
        "refusals": completion.refusals,
        "usage": asdict(completion.usage),
        "requests": completion.requests,
    }
    if any(completion.logprobs):  # absent from answers without logprobs: their entries stay as they were
        value["logprobs"] = [{k: v.to_json() for k, v in lp.items()} for lp in completion.logprobs]
    return value


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None if absent or bad."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(email.utils.mktime_tz(parsed) - time.time(), 0.0)


def _stored_completion(stored: Any, quiet: bool = False) -> Completion | None:
    """A cached answer, or None (asked again, then overwritten) when the entry lacks what an answer has."""
    try:
        return Completion(
            choices=list(stored["choices"]),
            usage=Usage(**stored["usage"]),
            requests=int(stored["requests"]),
            from_cache=True,
            refusals=list(stored.get("refusals", [])),
            logprobs=[
                {k: ValueLogprob.from_json(v) for k, v in choice.items()} for choice in stored.get("logprobs", [])
            ],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if not quiet:
            logger.warning("request cache: a stored answer is incomplete (%s: %s); asking again", type(e).__name__, e)
        return None


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached or 0)


def _error_text(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    status = getattr(error, "status_code", None)
    return f"{status} {message}" if status else f"{type(error).__name__}: {message}"
