"""Benchmark SV-UAMC against single-shot and fixed 16-sample majority on the simulated vision LLM.

    /tmp/venv/bin/python bench/annotate.py --rows 300

A labelled synthetic dataset (faces drawn from their labels) is the simulator's truth; levels are hidden the way the
corpora lack them (RAF-DB-like rows keep the expression, AffectNet-like keep expression and VA, DISFA-like keep the
AUs, plain rows keep nothing) and each method completes them. Reported per level on the hidden labels: coverage
(accepted / hidden: rejections count against it), accuracy (expression), RMSE and CCC (valence/arousal), mean per-AU
F1, and the AUROC of the uncertainty for wrong labels; per method: requests and choices per example and the estimated
token cost (the server's token counts at GPT-4o prices, cached input priced apart). Then throughput at 32 and 64
concurrency with 200 ms simulated latency, and the rows/s of a fully cached re-run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import datasets
import numpy as np

from seke_hf import SVUAMCAnnotator
from seke_hf.annotate import Prices
from seke_hf.schema import AUS, EXPRESSIONS, FEATURES, aus_from_active, empty_row
from seke_hf.simulate import SimulatedVLLM
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
from seke_hf.synthetic.faces import draw_face

LEVELS = ("expression", "valence_arousal", "aus")
PATTERNS = {  # which levels a row keeps (the rest is hidden), in the proportions of FEID's sources
    "rafdb": ("expression",),
    "affectnet": ("expression", "valence_arousal"),
    "disfa": ("aus",),
    "plain": (),
}
VA_WRONG = 0.25
"""A generated (valence, arousal) counts as wrong when its Euclidean error exceeds this (for the AUROC)."""


def make_data(rows: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(full labels, the same rows with levels hidden per PATTERNS)."""
    rng = np.random.default_rng(seed)
    full, hidden = [], []
    patterns = list(PATTERNS.values())
    for i in range(rows):
        expression = EXPRESSIONS[int(rng.integers(8))]  # the eight FEID classes ("other" is not drawn)
        active = set(PROTOTYPE_AUS[expression])
        for au in AUS:  # individual variation: a prototype AU may be missing, another may show
            if au in active and rng.random() < 0.15:
                active.discard(au)
            elif au not in active and rng.random() < 0.04:
                active.add(au)
        valence, arousal = (float(np.clip(x + rng.normal(0, 0.12), -1, 1)) for x in VA_ANCHORS[expression])
        row = empty_row(f"bench/{i:05d}", "bench", image=draw_face(seed * 100_003 + i, expression, sorted(active)))
        row.update(expression=EXPRESSIONS.index(expression), valence=valence, arousal=arousal)
        row["aus"] = aus_from_active(active)
        full.append(row)
        keep = patterns[i % len(patterns)]
        masked = dict(row)
        if "expression" not in keep:
            masked["expression"] = -1
        if "valence_arousal" not in keep:
            masked["valence"] = masked["arousal"] = None
        if "aus" not in keep:
            masked["aus"] = dict.fromkeys(AUS, -1)
        hidden.append(masked)
    return datasets.Dataset.from_list(full, features=FEATURES), datasets.Dataset.from_list(hidden, features=FEATURES)


# -- metrics ----------------------------------------------------------------------------------------------------------
def auroc(scores: list[float], wrong: list[bool]) -> float:
    """P(score of a wrong label > score of a right one), ties counting half (Mann-Whitney)."""
    pos = [s for s, w in zip(scores, wrong, strict=True) if w]
    neg = [s for s, w in zip(scores, wrong, strict=True) if not w]
    if not pos or not neg:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return float(2 * cov / (x.var() + y.var() + (mx - my) ** 2))


def evaluate(out: datasets.Dataset, full: datasets.Dataset) -> dict[str, dict[str, float]]:
    metrics: dict[str, dict[str, float]] = {}
    prov, unc = out["provenance"], out["uncertainty"]
    hidden = {level: [i for i, p in enumerate(prov) if p[level] != "human"] for level in LEVELS}
    done = {level: [i for i in hidden[level] if prov[i][level] == "generated"] for level in LEVELS}
    truth_e, out_e = full["expression"], out["expression"]
    wrong = [out_e[i] != truth_e[i] for i in done["expression"]]
    metrics["expression"] = {
        "coverage": len(done["expression"]) / max(len(hidden["expression"]), 1),
        "accuracy": 1 - sum(wrong) / max(len(wrong), 1),
        "auroc": auroc([unc[i]["expression"] for i in done["expression"]], wrong),
    }
    idx = done["valence_arousal"]
    tv, ta = np.array(full["valence"])[idx], np.array(full["arousal"])[idx]
    ov, oa = np.array(out["valence"], dtype=float)[idx], np.array(out["arousal"], dtype=float)[idx]
    error = np.hypot(ov - tv, oa - ta)
    metrics["valence_arousal"] = {
        "coverage": len(idx) / max(len(hidden["valence_arousal"]), 1),
        "rmse": float(np.sqrt(np.mean(np.concatenate([(ov - tv) ** 2, (oa - ta) ** 2])))),
        "ccc": (ccc(ov, tv) + ccc(oa, ta)) / 2,
        "auroc": auroc([unc[i]["valence_arousal"] for i in idx], list(error > VA_WRONG)),
    }
    idx = done["aus"]
    truth_aus, out_aus = full["aus"], out["aus"]
    f1s = []
    for au in AUS:
        t = np.array([truth_aus[i][au] == 1 for i in idx])
        p = np.array([out_aus[i][au] == 1 for i in idx])
        if t.sum():
            f1s.append(2 * (t & p).sum() / (t.sum() + p.sum()))
    any_wrong = [any(out_aus[i][au] != truth_aus[i][au] for au in AUS) for i in idx]
    metrics["aus"] = {
        "coverage": len(idx) / max(len(hidden["aus"]), 1),
        "f1": float(np.mean(f1s)) if f1s else math.nan,
        "auroc": auroc([unc[i]["aus"] for i in idx], any_wrong),
    }
    return metrics


# -- runs -------------------------------------------------------------------------------------------------------------
METHODS = {
    "single-shot": dict(min_samples=1, max_samples=1, temperature=0.0, verify=False, consistency_threshold=0.0,
                        max_uncertainty=dict.fromkeys(LEVELS, 1.0)),
    "fixed-16": dict(min_samples=16, max_samples=16, verify=False, consistency_threshold=0.0,
                     max_uncertainty=dict.fromkeys(LEVELS, 1.0)),
    "SV-UAMC": {},
}  # fmt: skip


def run_method(server: SimulatedVLLM, data: datasets.Dataset, cache: Path, batch_size: int, **params):
    server.reset_stats(prompt_cache=True)
    annotator = SVUAMCAnnotator(base_url=server.base_url, cache_dir=str(cache), progress=False, **params)
    start = time.perf_counter()
    out = data.map(annotator, batched=True, batch_size=batch_size, load_from_cache_file=False, desc="annotate")
    seconds = time.perf_counter() - start
    annotator.close()
    return out, server.stats(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--throughput-rows", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    full, hidden = make_data(args.rows, args.seed)
    prices = Prices()
    work = Path(tempfile.mkdtemp(prefix="seke_bench_annotate_"))

    results = {}
    with SimulatedVLLM(truth=full) as server:
        for name, params in METHODS.items():
            out, stats, _ = run_method(server, hidden, work / name, 64, **params)
            cost = prices.cost(stats["prompt_tokens"], stats["cached_tokens"], stats["completion_tokens"])
            results[name] = (evaluate(out, full), stats, cost, out)

    base = results["fixed-16"]
    n = len(hidden)
    print(f"\n{n} rows ({', '.join(PATTERNS)} patterns in turn); simulated model, default noise\n")
    print(
        "| method | expr acc | expr cov | expr AUROC | VA RMSE | VA CCC | VA cov | VA AUROC | AU F1 | AU cov "
        "| AU AUROC | requests/ex | choices/ex | choices vs fixed-16 | cost/1k ex | cost vs fixed-16 |"
    )
    print("|" + "---|" * 16)
    for name, (m, stats, cost, _) in results.items():
        e, v, a = m["expression"], m["valence_arousal"], m["aus"]
        print(
            f"| {name} | {e['accuracy']:.3f} | {e['coverage']:.1%} | {e['auroc']:.2f} | {v['rmse']:.3f} | "
            f"{v['ccc']:.3f} | {v['coverage']:.1%} | {v['auroc']:.2f} | {a['f1']:.3f} | {a['coverage']:.1%} | "
            f"{a['auroc']:.2f} | {stats['requests'] / n:.2f} | {stats['choices'] / n:.2f} | "
            f"{stats['choices'] / base[1]['choices']:.2f} | ${cost / n * 1000:.2f} | {cost / base[2]:.2f} |"
        )
    statuses = {name: dict(Counter(r[3]["status"])) for name, r in results.items()}
    print(f"\nstatuses: {statuses}")

    print("\nthroughput, 200 ms simulated latency:\n")
    print(
        "| concurrency | batch size | prefetch | rows | requests | seconds | rows/s | requests/s | ideal requests/s "
        "| cached re-run rows/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    tp_hidden = make_data(args.throughput_rows, args.seed + 1)[1]
    # The server runs in its own process, as a real endpoint would: it must not share the client's interpreter lock.
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=serve, args=(args.throughput_rows, args.seed + 1, 0.2, ports), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{ports.get(timeout=120)}/v1"
    try:
        rows = len(tp_hidden)
        for concurrency, batch_size, prefetch in (
            (32, 32, False),
            (32, rows, False),
            (64, rows, False),
            (32, 32, True),
            (64, 32, True),
        ):
            cache = work / f"tp{concurrency}-{batch_size}-{prefetch}"
            before = requests_at(base_url)
            seconds = timed_run(tp_hidden, base_url, cache, concurrency, batch_size, prefetch)
            sent = requests_at(base_url) - before
            cached_seconds = timed_run(tp_hidden, base_url, cache, concurrency, batch_size=64)
            assert requests_at(base_url) - before == sent, "a cached re-run sent requests"
            print(
                f"| {concurrency} | {batch_size} | {'yes' if prefetch else 'no'} | {rows} | {sent} | {seconds:.2f} | "
                f"{rows / seconds:.1f} | "
                f"{sent / seconds:.1f} | {concurrency / 0.2:.0f} | {rows / cached_seconds:.0f} |"
            )
    finally:
        server.terminate()


def serve(rows: int, seed: int, latency: float, ports) -> None:
    full = make_data(rows, seed)[0]
    with SimulatedVLLM(truth=full, latency=latency) as server:
        ports.put(server.port)
        server.wait(3600)


def requests_at(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as response:
        return json.load(response)["requests"]


def timed_run(
    data: datasets.Dataset, base_url: str, cache: Path, concurrency: int, batch_size: int, prefetch: bool = False
) -> float:
    annotator = SVUAMCAnnotator(base_url=base_url, cache_dir=str(cache), max_concurrency=concurrency, progress=False)
    start = time.perf_counter()
    if prefetch:
        annotator.prefetch(data)
    data.map(annotator, batched=True, batch_size=batch_size, load_from_cache_file=False)
    seconds = time.perf_counter() - start
    annotator.close()
    return seconds


if __name__ == "__main__":
    main()
