"""A spending cap that is never overrun: each request's cost is projected and reserved before it is sent.

    budget = Budget(max_cost=5.00, prices=Prices())
    backend.gate = budget            # ChatBackend asks `before_send` on every cache miss, `after_send` with the usage
    budget.spent, budget.reserved    # dollars paid so far, dollars of requests in flight
    budget.reserve(cost) -> bool; budget.settle(reserved, paid)   # the same by hand (batch rounds, at batch prices)

Projection (`CostModel`): prompt tokens from the request itself (text at ~4 characters a token, images by OpenAI's
tile rule) scaled by the largest actual/estimated ratio seen so far; completion tokens per choice from the largest
seen so far (or `max_tokens`, or a prior before the first answer); provider prompt caching is not counted on. Upper
estimates on purpose: a request is sent only while spent + in flight + its projection stays within the cap, so
concurrency cannot carry the spend past it. A refused request raises `BudgetExceeded` (a `RequestFailed`): the row
ends `failed` with a reason starting "budget", and a re-run with a larger cap continues from the request cache.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import PIL.Image

from seke_hf.llm.client import RequestFailed
from seke_hf.llm.request import Request
from seke_hf.llm.usage import Prices, Usage

PRIOR_COMPLETION_TOKENS = 400
"""Completion tokens per choice assumed before the first answer (an SV-UAMC answer with descriptions is ~150-250)."""

PRIOR_PROMPT_RATIO = 1.25
"""Safety factor on the prompt estimate before the first answer calibrates it."""


class BudgetExceeded(RequestFailed):
    """Sending this request could take the spend past `max_cost`."""


@dataclass
class CostModel:
    """Projects the tokens of a request from its content, calibrated by the answers seen."""

    prompt_ratio: float = 0.0
    completion_per_choice: float = 0.0

    def observe(self, request: Request, usage: Usage) -> None:
        estimate = estimate_prompt_tokens(request)
        if estimate and usage.prompt_tokens:
            self.prompt_ratio = max(self.prompt_ratio, usage.prompt_tokens / estimate)
        if request.n and usage.completion_tokens:
            self.completion_per_choice = max(self.completion_per_choice, usage.completion_tokens / request.n)

    def merge(self, other: CostModel) -> None:
        """Take the larger calibration of the two (an earlier process's, say)."""
        self.prompt_ratio = max(self.prompt_ratio, other.prompt_ratio)
        self.completion_per_choice = max(self.completion_per_choice, other.completion_per_choice)

    def tokens(self, request: Request) -> tuple[int, int]:
        """(prompt, completion) tokens this request is projected to cost at most."""
        prompt = estimate_prompt_tokens(request) * (self.prompt_ratio * 1.05 or PRIOR_PROMPT_RATIO)
        per_choice = self.completion_per_choice * 1.1 or PRIOR_COMPLETION_TOKENS
        if request.max_tokens is not None:
            per_choice = min(per_choice, request.max_tokens)
        return math.ceil(prompt), math.ceil(per_choice * request.n)

    def cost(self, request: Request, prices: Prices) -> float:
        prompt, completion = self.tokens(request)
        return prices.cost(prompt, 0, completion)


class Budget:
    """Reserve-before-send against a cap of `max_cost` US dollars (None: no cap, spend still counted)."""

    def __init__(self, max_cost: float | None, prices: Prices, *, spent: float = 0.0, model: CostModel | None = None):
        if max_cost is not None and max_cost < 0:
            raise ValueError(f"max_cost must be >= 0, got {max_cost}")
        self.priced = prices.known
        if not self.priced:
            if max_cost is not None:
                raise ValueError("max_cost needs prices: pass prices=Prices(...) (CLI: --prices)")
            prices = Prices(0.0, 0.0, 0.0, name=prices.name)  # spend is counted in tokens only: nothing to price
        self.max_cost = max_cost
        self.prices = prices
        self.spent = spent
        self.reserved = 0.0
        self.refused = 0
        self.model = model or CostModel()
        self._lock = threading.Lock()

    def reserve(self, cost: float) -> bool:
        """Hold `cost` if it fits under the cap; False (nothing held) if it does not."""
        with self._lock:
            if self.max_cost is not None and self.spent + self.reserved + cost > self.max_cost:
                self.refused += 1
                return False
            self.reserved += cost
            return True

    def settle(self, reserved: float, paid: float) -> None:
        """Release a reservation of `reserved` dollars; `paid` is what the answer actually cost (0: nothing sent)."""
        with self._lock:
            self.reserved = max(self.reserved - reserved, 0.0)
            self.spent += paid

    # -- the ChatBackend gate --------------------------------------------------------------------------------------
    def before_send(self, key: str, request: Request) -> Any:
        cost = self.model.cost(request, self.prices)
        if not self.reserve(cost):
            raise BudgetExceeded(self.refusal(cost))
        return (request, cost)

    def after_send(self, ticket: Any, usage: Usage | None) -> None:
        request, cost = ticket
        if usage is not None:
            self.model.observe(request, usage)
        self.settle(cost, 0.0 if usage is None else usage_cost(usage, self.prices))

    def refusal(self, cost: float) -> str:
        return (
            f"budget: not sent, a request projected at ${cost:.4f} would take the spend (${self.spent:.4f} paid, "
            f"${self.reserved:.4f} in flight) past max_cost=${self.max_cost:.2f}; a re-run with a larger budget "
            "continues from the cache"
        )

    def summary(self) -> str:
        cap = "no cap" if self.max_cost is None else f"max_cost ${self.max_cost:.2f}"
        refused = f", {self.refused} requests refused" if self.refused else ""
        return f"spent {f'${self.spent:.4f}' if self.priced else 'not priced'} ({cap}{refused})"


def estimate_prompt_tokens(request: Request) -> int:
    """Tokens of the prompt from its content alone: text at ~4 characters a token, 3 per message, images by
    OpenAI's tile rule (85 + 170 per 512-pixel tile after scaling to 2048 and then 768 on the short side)."""
    tokens = 3
    for message in request.messages:
        tokens += 3
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "image_url":
                tokens += _image_tokens(part.get("image_url") or {})
            else:
                tokens += math.ceil(len(str(part.get("text", ""))) / 4)
    if request.response_format is not None:
        tokens += math.ceil(len(str(request.response_format)) / 4)
    return tokens


def _image_tokens(image_url: Mapping[str, Any]) -> int:
    if image_url.get("detail") == "low":
        return 85
    url = str(image_url.get("url", ""))
    try:
        data = base64.b64decode(url.partition(",")[2], validate=False)
        with PIL.Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, binascii.Error, PIL.UnidentifiedImageError):
        return 85 + 170 * 4  # an image we cannot size: as a 1024x1024 one
    scale = min(1.0, 2048 / max(width, height))
    scale *= min(1.0, 768 / (min(width, height) * scale))
    return 85 + 170 * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def usage_cost(usage: Usage, prices: Prices) -> float:
    return prices.cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
