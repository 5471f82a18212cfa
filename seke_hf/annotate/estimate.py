"""What a whole annotation run will cost, projected from a sample of its rows, online and through the Batch API.

    estimate = estimate_cost(annotator, {"feid": feid, "feab": feab}, rows=50)
    print(estimate.render())

The sample (rows spread evenly over each dataset, in proportion to its size) is annotated online for real, so its
answers are paid once and kept in the request cache: the full run that follows reuses them. The projection scales
the sample's tokens per row to each dataset's size and prices them at the online and the batch prices. SV-UAMC's
later rounds concern fewer rows, and rows with nothing missing cost nothing: a sample spread over the dataset sees
both, so the projection is as good as the sample is representative (a few percent at 50 rows on FEID-like data).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import datasets
import numpy as np

from seke_hf.llm import Prices, Usage

if TYPE_CHECKING:
    from seke_hf.annotate.annotator import SVUAMCAnnotator


@dataclass
class DatasetSample:
    rows: int
    sampled: int
    usage: Usage = field(default_factory=Usage)
    requests: int = 0

    def projected(self, prices: Prices) -> float:
        if not self.sampled:
            return 0.0
        u = self.usage
        return prices.cost(u.prompt_tokens, u.cached_tokens, u.completion_tokens) * self.rows / self.sampled


@dataclass
class CostEstimate:
    datasets: dict[str, DatasetSample]
    prices: Prices
    batch_prices: Prices
    paid: float = 0.0

    @property
    def online(self) -> float:
        return sum(d.projected(self.prices) for d in self.datasets.values())

    @property
    def batch(self) -> float:
        return sum(d.projected(self.batch_prices) for d in self.datasets.values())

    def render(self) -> str:
        sampled = sum(d.sampled for d in self.datasets.values())
        lines = [
            f"cost estimate from {sampled} rows annotated online (${self.paid:.4f} paid; their answers stay in the "
            "cache and are not paid again):"
        ]
        for name, d in self.datasets.items():
            per_row = d.requests / d.sampled if d.sampled else 0.0
            lines.append(
                f"  {name:<6} {d.rows:>7} rows: ${d.projected(self.prices):,.2f} online, "
                f"${d.projected(self.batch_prices):,.2f} batch ({per_row:.2f} requests per row in the sample)"
            )
        rows = sum(d.rows for d in self.datasets.values())
        lines.append(f"  {'total':<6} {rows:>7} rows: ${self.online:,.2f} online, ${self.batch:,.2f} batch")
        return "\n".join(lines)


def estimate_cost(
    annotator: SVUAMCAnnotator, parts: Mapping[str, datasets.Dataset], *, rows: int = 50, batch_size: int = 64
) -> CostEstimate:
    """Annotate about `rows` rows of `parts` online and project the cost of all of them (see the module)."""
    online = copy.copy(annotator)  # the sample is bought online (at once), whatever mode the run will use
    online.runtime = copy.copy(annotator.runtime)
    online.runtime.batch = None
    online._init_runtime()
    total = sum(len(ds) for ds in parts.values()) or 1
    estimate = CostEstimate({}, annotator.prices_for(batch=False), annotator.prices_for(batch=True))
    try:
        for name, ds in parts.items():
            k = min(len(ds), max(1, round(rows * len(ds) / total))) if len(ds) else 0
            picked = sorted({int(i) for i in np.linspace(0, len(ds) - 1, k)}) if k else []
            tally = online.backend.tally
            before = (copy.copy(tally.usage), copy.copy(tally.cached_usage), tally.requests, tally.cache_hits)
            if picked:
                online.annotate(ds.select(picked), batch_size=batch_size, desc=f"estimate {name}")
            sample = DatasetSample(
                len(ds), len(picked), requests=tally.requests + tally.cache_hits - before[2] - before[3]
            )
            sample.usage += _minus(tally.usage, before[0])
            sample.usage += _minus(tally.cached_usage, before[1])
            estimate.datasets[name] = sample
        estimate.paid = online.backend.tally.cost(estimate.prices)
    finally:
        online.close()
    return estimate


def _minus(after: Usage, before: Usage) -> Usage:
    return Usage(
        after.prompt_tokens - before.prompt_tokens,
        after.completion_tokens - before.completion_tokens,
        after.cached_tokens - before.cached_tokens,
    )
