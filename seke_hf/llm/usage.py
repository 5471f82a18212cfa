"""Tokens and what they cost (`Usage`, `Prices`, `Tally`), apart from the client: reports and cards count with them.

`Tally.cost(prices)` prices a run: uncached prompt tokens, provider-cached prompt tokens and completion tokens each at
their own rate (US dollars per million tokens; default GPT-4o list prices).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens, and the name of the price list, shown beside every estimate so a figure never
    passes for another provider's. Defaults: GPT-4o list prices (openai.com/api/pricing, 2025).

    `Prices.unknown()` prices nothing (a local model, or a provider whose prices were not given): its cost is None
    and estimates read "not priced".
    """

    input: float | None = 2.50
    cached_input: float | None = 1.25
    output: float | None = 10.00
    name: str = ""

    @classmethod
    def unknown(cls) -> Prices:
        return cls(None, None, None, name="not priced")

    @property
    def known(self) -> bool:
        return None not in (self.input, self.cached_input, self.output)

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float | None:
        if not self.known:
            return None
        uncached = max(prompt_tokens - cached_tokens, 0)
        return (uncached * self.input + cached_tokens * self.cached_input + completion_tokens * self.output) / 1e6

    def batch(self) -> Prices:
        """Batch API prices: half of these (OpenAI's Batch API discount; GPT-4o: $1.25 in, $5.00 out)."""
        if not self.known:
            return self
        name = f"{self.name} batch" if self.name else ""
        return Prices(self.input / 2, self.cached_input / 2, self.output / 2, name=name)

    def describe(self) -> str:
        """What the estimates are priced at, e.g. "gpt-4o prices ($2.50 input, $1.25 cached, ...)"."""
        if not self.known:
            return "not priced"
        rates = f"${_rate(self.input)} input, ${_rate(self.cached_input)} cached, ${_rate(self.output)} output"
        return f"{self.name} prices ({rates} per 1M tokens)" if self.name else f"{rates} per 1M tokens"

    def format(self, cost: float | None, digits: int = 2) -> str:
        """A cost for people: "$3.92", or "not priced"."""
        return "not priced" if cost is None or not self.known else f"${cost:,.{digits}f}"


def _rate(usd: float) -> str:
    """Cents, or tenths of a cent where a list has them: 2.50, 0.075."""
    text = f"{usd:.3f}"
    return text[:-1] if text.endswith("0") else text


PRICE_TABLE: dict[str, Prices] = {
    "gpt-4o": Prices(2.50, 1.25, 10.00, name="gpt-4o"),
    "gpt-4o-mini": Prices(0.15, 0.075, 0.60, name="gpt-4o-mini"),
}
"""Named price lists (OpenAI list prices, 2025), for `--prices NAME` and models on OpenAI's endpoint."""


@dataclass
class Usage:
    """The tokens of one answer (or a sum of answers); `cached_tokens` is the provider-cached share of the prompt."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __iadd__(self, other: Usage) -> Usage:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        return self


@dataclass
class Tally:
    """What a backend did in this process: sent requests and their tokens, and what the cache saved."""

    requests: int = 0
    choices: int = 0
    cache_hits: int = 0  # answers an earlier run paid for
    reused: int = 0  # answers this process fetched already, asked for again (prefetch then map, joined in flight)
    retries: int = 0
    failures: int = 0
    usage: Usage = field(default_factory=Usage)
    cached_usage: Usage = field(default_factory=Usage)  # tokens of answers read from the cache (not paid again)

    def cost(self, prices: Prices) -> float | None:
        return prices.cost(self.usage.prompt_tokens, self.usage.cached_tokens, self.usage.completion_tokens)
