"""Tokens and what they cost (`Usage`, `Prices`, `Tally`), apart from the client: reports and cards count with them.

`Tally.cost(prices)` prices a run: uncached prompt tokens, provider-cached prompt tokens and completion tokens each at
their own rate (US dollars per million tokens; default GPT-4o list prices).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens. Defaults: GPT-4o list prices (openai.com/api/pricing, 2025)."""

    input: float = 2.50
    cached_input: float = 1.25
    output: float = 10.00

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        uncached = max(prompt_tokens - cached_tokens, 0)
        return (uncached * self.input + cached_tokens * self.cached_input + completion_tokens * self.output) / 1e6

    def batch(self) -> Prices:
        """Batch API prices: half of these (OpenAI's Batch API discount; GPT-4o: $1.25 in, $5.00 out)."""
        return Prices(self.input / 2, self.cached_input / 2, self.output / 2)


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

    def cost(self, prices: Prices) -> float:
        return prices.cost(self.usage.prompt_tokens, self.usage.cached_tokens, self.usage.completion_tokens)
