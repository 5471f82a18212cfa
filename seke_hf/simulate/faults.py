"""Faults on demand: what real providers do to a long annotation run, so clients can be tested against it.

Request faults replace the whole answer: `rate_limit` (HTTP 429 with `retry-after`), `server_error` (HTTP 500),
`timeout` (the answer comes `timeout_delay` seconds late, after any sane client timeout). Choice faults spoil one
choice of an otherwise good answer: `truncate` (the JSON is cut off, `finish_reason: "length"`) and `refusal` (the
model declines, as in `message.refusal`). Each kind happens at random with its rate, or deterministically for the
next requests/choices after `inject(kind, count)`.

Provider behaviours that are not random live here too: `max_n` (1 rejects `n > 1` with HTTP 400, like providers
without `n`), `structured_output=False` (rejects `response_format`), `logprobs` (what a request with
`logprobs: true` gets: "return" answers token log probabilities like GPT-4o and vLLM, "ignore" accepts the parameters
and answers `"logprobs": null` as some OpenAI-compatible servers do, "refuse" is an HTTP 400 with param "logprobs"
like providers without them), and a fixed `latency` per request.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

REQUEST_FAULTS = ("rate_limit", "server_error", "timeout")
CHOICE_FAULTS = ("truncate", "refusal")
FAULT_KINDS = REQUEST_FAULTS + CHOICE_FAULTS
LOGPROBS_MODES = ("return", "ignore", "refuse")


@dataclass(frozen=True)
class FaultPlan:
    """Fault rates (per request, or per choice for `truncate` and `refusal`) and provider behaviours."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    timeout: float = 0.0
    truncate: float = 0.0
    refusal: float = 0.0
    retry_after: float = 1.0
    """Seconds announced in the 429's `retry-after` (and `retry-after-ms`) header."""
    timeout_delay: float = 30.0
    """How late a timed-out answer comes (set it above the client's timeout)."""
    latency: float = 0.0
    """Seconds every request takes, for throughput benchmarks."""
    max_n: int | None = 128
    structured_output: bool = True
    logprobs: str = "return"
    """What `logprobs: true` gets: "return" (token log probabilities), "ignore" (null) or "refuse" (HTTP 400)."""
    fault_seed: int = 0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            if not 0.0 <= getattr(self, kind) <= 1.0:
                raise ValueError(f"fault rate {kind}={getattr(self, kind)} must be in [0, 1]")
        if self.max_n is not None and self.max_n < 1:
            raise ValueError(f"max_n must be at least 1, got {self.max_n}")
        if self.logprobs not in LOGPROBS_MODES:
            raise ValueError(f"logprobs must be one of {LOGPROBS_MODES}, got {self.logprobs!r}")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def request_options(self) -> dict[str, Any]:
        """What `request.parse_request` must know of this provider to refuse what it does not support."""
        return {
            "max_n": self.max_n,
            "structured_output": self.structured_output,
            "logprobs_supported": self.logprobs != "refuse",
        }


class FaultInjector:
    """Decides, thread-safely, which fault (if any) hits each request and each choice."""

    def __init__(self, plan: FaultPlan):
        self.plan = plan
        self._rng = np.random.default_rng(plan.fault_seed)
        self._queued: Counter[str] = Counter()
        self._lock = threading.Lock()

    def inject(self, kind: str, count: int = 1) -> None:
        """Force `kind` on the next `count` requests (or choices, for choice faults)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._queued[kind] += count

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()

    def queued(self) -> dict[str, int]:
        with self._lock:
            return {kind: count for kind, count in self._queued.items() if count}

    def request_fault(self) -> str | None:
        return self._draw(REQUEST_FAULTS)

    def choice_fault(self) -> str | None:
        return self._draw(CHOICE_FAULTS)

    def _draw(self, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            for kind in kinds:
                if self._queued[kind] > 0:
                    self._queued[kind] -= 1
                    return kind
            for kind in kinds:
                rate = getattr(self.plan, kind)
                if rate and self._rng.random() < rate:
                    return kind
        return None
