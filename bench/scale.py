"""Benchmark SV-UAMC on Ray (1 and 2 workers) against the single-process annotator, on the simulated vision LLM.

    .venv/bin/python bench/scale.py --rows 192 --latency 0.2 --concurrency 16

Every run starts from an empty request cache, so each sends the same requests; the simulator (its own process, as a
real endpoint) answers each after `--latency` seconds. Reported per run: wall seconds (a Ray run includes starting
its actors and writing Parquet shards; the cluster itself is started once beforehand and timed apart), the
annotating window (first request sent to last answer, polled from the simulator's /stats every 20 ms), requests/s
and rows/s in that window, and each run's rows/s (window, wall) over the single-process run's.

Each Ray worker keeps `--concurrency` requests in flight, so 2 workers hold twice as many as one process: against a
latency-bound server that is the speed-up Ray buys. On a 2-core machine the workers, the driver and the simulator
share the CPUs, so what shows is mostly Ray's overhead.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import datasets

sys.path.insert(0, str(Path(__file__).parent))
from annotate import make_data, serve  # bench/annotate.py: the same faces and server

from seke_hf import SVUAMCAnnotator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--latency", type=float, default=0.2, help="simulated seconds per request")
    parser.add_argument("--concurrency", type=int, default=16, help="max_concurrency of each annotator")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import ray

    from seke_hf.scale import annotate_with_ray, write_shards

    hidden = make_data(args.rows, args.seed)[1]
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=serve, args=(args.rows, args.seed, args.latency, ports), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{ports.get(timeout=300)}/v1"
    work = Path(tempfile.mkdtemp(prefix="seke_bench_scale_"))

    def annotator(name: str) -> SVUAMCAnnotator:
        return SVUAMCAnnotator(
            base_url=base_url, cache_dir=str(work / name), max_concurrency=args.concurrency, progress=False
        )

    def single_process() -> list[dict]:
        ann = annotator("single")
        out = ann.annotate(hidden, batch_size=args.batch_size)
        ann.close()
        return out.select_columns(["sample_id", "status", "requests"]).to_list()

    def on_ray(workers: int):
        def run() -> list[dict]:
            out = work / f"ray{workers}"
            write_shards(
                annotate_with_ray(hidden, annotator(out.name), workers=workers, batch_size=args.batch_size), str(out)
            )
            back = datasets.load_dataset(str(out), split="train")
            return back.select_columns(["sample_id", "status", "requests"]).to_list()

        return run

    try:
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - started
        print(
            f"rows {args.rows}, latency {args.latency * 1000:.0f} ms, max_concurrency {args.concurrency} per "
            f"annotator, batch size {args.batch_size}; ray.init(num_cpus=2) took {ray_start:.1f} s\n"
        )
        print(
            "| run | in flight at most | requests | wall s | annotating s | requests/s | rows/s | rows/s vs single "
            "(annotating) | rows/s vs single (wall) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        reference, base = None, None
        for name, limit, run in (
            ("single process (prefetch)", args.concurrency, single_process),
            ("Ray, 1 worker", args.concurrency, on_ray(1)),
            ("Ray, 2 workers", args.concurrency * 2, on_ray(2)),
        ):
            with Window(base_url) as window:
                start = time.perf_counter()
                rows = run()
                seconds = time.perf_counter() - start
            reference = reference or rows
            assert rows == reference, f"{name}: outputs differ from the single-process run"
            busy = window.seconds
            base = base or (args.rows / busy, args.rows / seconds)
            print(
                f"| {name} | {limit} | {window.requests} | {seconds:.2f} | {busy:.2f} | {window.requests / busy:.1f} | "
                f"{args.rows / busy:.1f} | {args.rows / busy / base[0]:.2f} | {args.rows / seconds / base[1]:.2f} |"
            )
        print(
            f"\nideal requests/s at {args.concurrency} in flight: {args.concurrency / args.latency:.0f} per annotator"
        )
    finally:
        ray.shutdown()
        server.terminate()


class Window:
    """Polls the simulator's /stats: the requests of a run and the span from its first request to its last answer."""

    def __init__(self, base_url: str, every: float = 0.02) -> None:
        self.url, self.every = base_url.removesuffix("/v1") + "/stats", every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.first: float | None = None
        self.last: float | None = None

    def _stats(self) -> dict:
        with urllib.request.urlopen(self.url) as response:
            return json.load(response)

    def _poll(self) -> None:
        seen = self.start["completions"]
        while not self._stop.wait(self.every):
            stats = self._stats()
            now = time.perf_counter()
            if self.first is None and stats["requests"] > self.start["requests"]:
                self.first = now
            if stats["completions"] > seen:
                seen, self.last = stats["completions"], now

    def __enter__(self) -> Window:
        self.start = self._stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.requests = self._stats()["requests"] - self.start["requests"]

    @property
    def seconds(self) -> float:
        return (self.last - self.first) if self.first and self.last else float("nan")


if __name__ == "__main__":
    main()
