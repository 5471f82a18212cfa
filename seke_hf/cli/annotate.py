"""`seke-hf annotate`: complete the missing emotion labels of a dataset with SV-UAMC and save the result.

    seke-hf annotate --data imagefolder:faces/ --out annotated/ --model gpt-4o
    seke-hf annotate --data saved_rafdb/ --out rafdb_feid/ --base-url http://127.0.0.1:8000/v1 --max-samples 8
    seke-hf annotate --data org/faces --split train --out faces_annotated/
    seke-hf annotate --data rafdb --data-dir /data/RAF-DB --config original --out rafdb_annotated/
    seke-hf annotate --data faces/ --out s3://lab/faces-annotated --engine ray --address auto --workers 16

With --engine ray, Ray actors annotate (pip install "seke-hf[ray]"; see seke_hf.scale) and --out receives Parquet
shards, out/data/{split}-NNNNN-of-NNNNN.parquet, which datasets.load_dataset(out) reads.

The API key comes from OPENAI_API_KEY (never from the command line, where it would land in shell histories).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from seke_hf.annotate.batch_run import BatchPending
from seke_hf.cli import CLIError
from seke_hf.cli.svuamc_options import add_svuamc_arguments, annotator_from_args, report_failed_rows, report_pending
from seke_hf.schema import LEVELS

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "annotate",
        help="fill missing expression / valence-arousal / AU labels with a vision LLM (SV-UAMC)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, help="imagefolder:DIR, a dataset saved with save_to_disk, a Hub id or a corpus name"
    )
    p.add_argument("--out", required=True, help="folder to save the annotated dataset to (save_to_disk)")
    p.add_argument("--split", default=None, help="only this split (default: all)")
    p.add_argument("--config", default=None, help="builder config, for a Hub id or a registered corpus name")
    p.add_argument("--data-dir", default=None, help="raw corpus folder, for a registered corpus name (e.g. rafdb)")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows of each split (dry runs)")
    p.add_argument("--image-column", default="image")
    add_svuamc_arguments(p)
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="rows per map batch, annotated concurrently; several times --max-concurrency keeps requests flowing "
        "while the batch's slowest rows finish their extra rounds",
    )
    p.add_argument("--num-proc", type=int, default=None)
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="annotate in this process or on Ray")
    p.add_argument("--address", default=None, help="Ray cluster to join (auto: this machine's); default: start one")
    p.add_argument("--workers", type=int, default=2, help="Ray actors, each with --max-concurrency requests in flight")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (neither ours nor those of datasets' map and save)")  # fmt: skip
    p.set_defaults(func=run)


def load_data(
    spec: str, split: str | None = None, *, config: str | None = None, data_dir: str | None = None
) -> datasets.DatasetDict:
    """`imagefolder:DIR`, a `save_to_disk` folder, a local Hub layout (`build_repo` output), or a Hub id /
    registered builder name (with `config` and `data_dir`) -> DatasetDict (a lone Dataset becomes "train")."""
    if spec.startswith("imagefolder:"):
        folder = spec.removeprefix("imagefolder:")
        if not Path(folder).is_dir():
            raise CLIError(f"imagefolder {folder!r} is not a folder")
        data = datasets.load_dataset("imagefolder", data_dir=folder)
    elif Path(spec).is_dir():
        folder = Path(spec)
        if any((folder / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
            data = datasets.load_from_disk(spec)
        elif (folder / "README.md").is_file() and (folder / "data").is_dir():  # a Hub layout, e.g. build/hub/feab
            data = datasets.load_dataset(spec, config)
        else:
            raise CLIError(
                f"{spec!r} is a folder but not a saved dataset (no dataset_dict.json or state.json) nor a Hub "
                f"layout (README.md + data/); use imagefolder:{spec} for a folder of images"
            )
    else:
        data = datasets.load_dataset(spec, config, data_dir=data_dir)
    if isinstance(data, datasets.Dataset):
        data = datasets.DatasetDict({"train": data})
    if split is not None:
        if split not in data:
            raise CLIError(f"no split {split!r} in {spec!r} (splits: {', '.join(data)})")
        data = datasets.DatasetDict({split: data[split]})
    return data


def run(args: argparse.Namespace) -> int:
    started = time.time()
    if not args.progress:
        datasets.disable_progress_bars()
    data = load_data(args.data, args.split, config=args.config, data_dir=args.data_dir)
    annotator = annotator_from_args(args, image_column=args.image_column)
    if args.engine == "ray":
        from seke_hf.scale import ray_annotate

        ray_annotate.connect(args.address)
    out = datasets.DatasetDict()
    try:
        for name, ds in data.items():
            if args.limit is not None:
                ds = ds.select(range(min(args.limit, len(ds))))
            if args.image_column not in ds.column_names:
                raise CLIError(f"split {name!r} has no column {args.image_column!r} (columns: {ds.column_names})")
            if args.engine == "ray":
                annotated = ray_annotate.annotate_with_ray(
                    ds, annotator, workers=args.workers, batch_size=args.batch_size
                )
                shards = ray_annotate.write_shards(annotated, args.out, split=name)
                out[name] = ray_annotate.read_shards(shards, columns=REPORTED)
            else:
                out[name] = annotator.annotate(
                    ds, batch_size=args.batch_size, num_proc=args.num_proc, desc=f"SV-UAMC {name}"
                )
            logger.info("%s: %s", name, report(out[name]))
    except BatchPending as pending:
        annotator.close()
        return report_pending("annotate", pending)
    workers = args.workers if args.engine == "ray" else args.num_proc if (args.num_proc or 0) > 1 else 0
    logger.info("usage: %s", usage_line(annotator, out, started, workers))
    if args.max_cost is not None or annotator.runtime.batch is not None:
        logger.info("budget: %s", annotator.budget.summary())
    annotator.close()
    if args.engine == "local":
        os.makedirs(args.out, exist_ok=True)
        out.save_to_disk(args.out)
    logger.info("saved to %s", args.out)
    statuses = Counter(status for ds in out.values() for status in ds["status"])
    # with --max-cost, rows the budget did not reach are expected: reported, not an error
    allow = args.allow_failures or args.max_cost is not None
    report_failed_rows("annotate", statuses["failed"], statuses.total(), allow)
    return 0


def usage_line(annotator: Any, out: datasets.DatasetDict, started: float, workers: int = 0) -> str:
    """What this run sent, counted as it was sent (retries and failures included), or, when `datasets` returned
    every split from its cache of an earlier identical run, that no request was made at all. When `workers` other
    processes asked (num_proc workers, Ray actors), their answers are read back from the shared request cache."""
    backend = annotator.backend
    if workers:
        fetched = backend.fetched_since(started)
        fetched.cache_hits = max(sum(sum(ds["requests"]) for ds in out.values()) - fetched.requests, 0)
        return backend.summary(fetched) + f" (answers of {workers} processes; their retries are not counted)"
    tally = backend.tally
    if tally.requests == tally.cache_hits == tally.reused == 0 and any(len(ds) for ds in out.values()):
        return "no request: datasets returned the annotated rows from its cache of an identical earlier run"
    return backend.summary(tally)


REPORTED = ["status", "provenance", "mc_samples", "requests"]
"""The columns `report` reads."""


def report(ds: datasets.Dataset) -> str:
    """Status counts, per-level provenance, samples and requests of an annotated split."""
    statuses = Counter(ds["status"])
    provenance = ds["provenance"]
    levels = ", ".join(
        f"{level} " + "/".join(f"{k} {v}" for k, v in sorted(Counter(p[level] for p in provenance).items()))
        for level in LEVELS
    )
    samples, requests = sum(ds["mc_samples"]), sum(ds["requests"])
    return (
        f"{len(ds)} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + f"; {levels}; "
        f"{samples} samples in {requests} requests"
    )
