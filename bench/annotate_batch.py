"""Benchmark SV-UAMC online against batch mode on the simulated vision LLM: cost, batches, wall time, outputs.

    python bench/annotate_batch.py --rows 200 --latency 0.2 --batch-delay 3

The same dataset (synthetic faces; each row lacks one, two or all three levels) is annotated twice from an empty
request cache, against one simulator whose prompt cache is emptied between the runs: once online (requests at
`--latency` each, `--concurrency` in flight), once in batch mode (each sampling round one Batch API job that takes
`--batch-delay` seconds). Reported: the cost of each run from the server's own token counts (online at GPT-4o list
prices, batch at GPT-4o Batch API prices) and their ratio (target <= 0.55), the number of batches against the number
of rounds (the longest row's requests), the wall times, and whether the two outputs are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets

from seke_hf import SVUAMCAnnotator
from seke_hf.annotate.batch_run import BatchOptions
from seke_hf.llm import Prices
from seke_hf.schema import AUS, EXPRESSIONS, FEATURES, aus_from_active, empty_row
from seke_hf.simulate import SimulatedVLLM
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
from seke_hf.synthetic.faces import draw_face

KEPT = [("expression",), ("expression", "valence_arousal"), ("aus",), ()]
"""Levels each row keeps (cycled): RAF-DB-like, AffectNet-like, DISFA-like, unlabelled."""


def faces(rows: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(the labelled truth, the same rows with levels hidden)."""
    truth, hidden = [], []
    for i in range(rows):
        expression = EXPRESSIONS[i % 8]
        row = empty_row(f"bench/{i:05d}", "bench", image=draw_face(7919 * i, expression, size=(96, 96)))
        row["expression"] = EXPRESSIONS.index(expression)
        row["valence"], row["arousal"] = VA_ANCHORS[expression]
        row["aus"] = aus_from_active(PROTOTYPE_AUS[expression])
        truth.append(row)
        kept = KEPT[i % len(KEPT)]
        hidden.append(
            {
                **row,
                "expression": row["expression"] if "expression" in kept else -1,
                "valence": row["valence"] if "valence_arousal" in kept else None,
                "arousal": row["arousal"] if "valence_arousal" in kept else None,
                "aus": row["aus"] if "aus" in kept else dict.fromkeys(AUS, -1),
            }
        )
    return datasets.Dataset.from_list(truth, features=FEATURES), datasets.Dataset.from_list(hidden, features=FEATURES)


def run(server: SimulatedVLLM, data: datasets.Dataset, cache: Path, **options) -> tuple[datasets.Dataset, float]:
    server.reset_stats(prompt_cache=True)
    annotator = SVUAMCAnnotator(base_url=server.base_url, cache_dir=str(cache), progress=False, **options)
    started = time.perf_counter()
    out = annotator.annotate(data, batch_size=256)
    elapsed = time.perf_counter() - started
    annotator.close()
    return out, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per online request")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-delay", type=float, default=3.0, help="seconds from batch creation to completion")
    args = parser.parse_args()

    truth, data = faces(args.rows)
    online_prices, batch_prices = Prices(), Prices().batch()
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimulatedVLLM(truth=truth, latency=args.latency, batch_delay=args.batch_delay) as server,
    ):
        online, online_seconds = run(server, data, Path(tmp) / "online", max_concurrency=args.concurrency)
        stats = server.stats()
        online_cost = online_prices.cost(stats["prompt_tokens"], stats["cached_tokens"], stats["completion_tokens"])
        online_requests = stats["requests"]
        batch = BatchOptions(poll_interval=min(1.0, args.batch_delay / 10))
        batched, batch_seconds = run(server, data, Path(tmp) / "batch", batch=batch)
        stats = server.stats()["batch"]
        batch_cost = batch_prices.cost(stats["prompt_tokens"], stats["cached_tokens"], stats["completion_tokens"])
    rounds = max(online["requests"])
    identical = online.remove_columns("image").to_list() == batched.remove_columns("image").to_list()
    print(f"{args.rows} rows, simulator latency {args.latency}s online, batch delay {args.batch_delay}s")
    print(f"  online: {online_requests} requests, ${online_cost:.4f} at GPT-4o prices, {online_seconds:.1f}s")
    print(
        f"  batch:  {stats['requests']} lines in {sum(stats['batches'].values())} batches for {rounds} rounds, "
        f"${batch_cost:.4f} at GPT-4o batch prices, {batch_seconds:.1f}s"
    )
    print(f"  cost ratio batch/online: {batch_cost / online_cost:.3f} (target <= 0.55)")
    print(f"  wall time ratio batch/online: {batch_seconds / online_seconds:.2f}")
    print(f"  outputs identical: {identical}")


if __name__ == "__main__":
    main()
