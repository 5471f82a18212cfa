"""`seke-hf evaluate`: run vision LLMs on FEAB, or score their predictions, and write a report.

    seke-hf evaluate --model gpt-4o --data org/feab --out report/
    seke-hf evaluate --model qwen2.5-vl --base-url http://127.0.0.1:8000/v1 --data feab_saved/ --limit 200 --out r/
    seke-hf evaluate --model gpt-4o --model gpt-4o-mini --data feab --data-dir CORPORA/ --out report/
    seke-hf evaluate --predictions mine=preds.jsonl --predictions base=base.jsonl --data org/feab --out report/

`--data` is a Hub id, a dataset saved with `save_to_disk`, or a registered builder (`feab`, with `--data-dir`); the
split defaults to `test` when there is one. Several `--model`s (same endpoint) and `--predictions NAME=FILE` (JSONL
written elsewhere, format in `seke_hf.evaluate.scoring`) go side by side in one report: `report.md`, `report.json`,
PNG plots (with matplotlib) and each run's `predictions/<model>.jsonl`. The API key comes from OPENAI_API_KEY, never
from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from typing import Any

import datasets

from seke_hf.cli import CLIError
from seke_hf.schema import LEVELS

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate vision LLMs on FEAB (expression, valence/arousal, AUs) or score their predictions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="Hub id, save_to_disk folder, or builder name (with --data-dir)")
    p.add_argument("--data-dir", default=None, help="data_dir for a builder, e.g. the corpora root for 'feab'")
    p.add_argument("--config", default=None, help="dataset config (e.g. a source corpus)")
    p.add_argument("--split", default=None, help="split to evaluate on (default: test, or the only split)")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows (dry runs)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--model", action="append", default=[], help="model to ask (repeat for several)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI)")
    p.add_argument(
        "--predictions", action="append", default=[], metavar="NAME=FILE", help="score a JSONL of predictions"
    )
    p.add_argument("--tasks", nargs="+", choices=LEVELS, default=None, help="default: all three")
    p.add_argument("--answer-format", choices=("auto", "json_schema", "tag"), default="auto")
    p.add_argument("--include-generated", action="store_true", help="also score labels the annotator generated")
    p.add_argument("--image-column", default="image")
    p.add_argument("--image-max-side", type=int, default=512)
    p.add_argument("--max-concurrency", type=int, default=32)
    p.add_argument("--max-retries", type=int, default=6, help="retries of a failing request (backoff from 1 s)")
    p.add_argument("--allow-failures", action="store_true", help="report a run even when most of its requests failed")
    p.add_argument(
        "--cache-dir", default=None, help="request cache folder (default: SEKE_HF_CACHE or ~/.cache/seke_hf)"
    )
    p.add_argument("--no-cache", dest="use_cache", action="store_false", help="ask again even if answered before")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)
    return p


def load_benchmark(
    spec: str, *, config: str | None = None, split: str | None = None, data_dir: str | None = None
) -> datasets.Dataset:
    """The split to evaluate on: `split`, else `test`, else the only split."""
    if config is None and data_dir is None:
        from seke_hf.cli.annotate import load_data

        splits = load_data(spec)
    else:
        splits = datasets.load_dataset(spec, config, data_dir=data_dir)
    if isinstance(splits, datasets.Dataset):
        splits = datasets.DatasetDict({"train": splits})
    if split is None:
        split = "test" if "test" in splits else next(iter(splits)) if len(splits) == 1 else None
        if split is None:
            raise CLIError(f"{spec!r} has several splits ({', '.join(splits)}) and none is 'test': pass --split")
    if split not in splits:
        raise CLIError(f"no split {split!r} in {spec!r} (splits: {', '.join(splits)})")
    return splits[split]


def _named_predictions(specs: list[str]) -> dict[str, str]:
    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise CLIError(f"--predictions takes NAME=FILE, got {spec!r}")
        if not os.path.isfile(path):
            raise CLIError(f"predictions file {path!r} not found")
        named[name] = path
    return named


def run(args: argparse.Namespace) -> int:
    from seke_hf.evaluate import markdown_report, score, write_report
    from seke_hf.evaluate import run as run_model

    if not args.model and not args.predictions:
        raise CLIError("nothing to evaluate: pass --model (to ask a model) and/or --predictions NAME=FILE")
    files = _named_predictions(args.predictions)
    dataset = load_benchmark(args.data, config=args.config, split=args.split, data_dir=args.data_dir)
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    tasks = tuple(args.tasks or LEVELS)
    results: dict[str, Any] = {}
    for model in args.model:
        evaluation = run_model(
            dataset, model, args.base_url, tasks=tasks, answer_format=args.answer_format,
            include_generated=args.include_generated, image_column=args.image_column,
            image_max_side=args.image_max_side, max_concurrency=args.max_concurrency, max_retries=args.max_retries,
            cache_dir=args.cache_dir, use_cache=args.use_cache, progress=args.progress,
            predictions_path=os.path.join(args.out, "predictions", _file_name(model) + ".jsonl"),
        )  # fmt: skip
        results[model] = evaluation
        logger.info(
            "%s: %s requests sent, %s from cache", model, evaluation.info["requests"], evaluation.info["cache_hits"]
        )
    for name, path in files.items():
        if name in results:
            raise CLIError(f"two results are named {name!r}")
        results[name] = score(path, dataset, tasks=tasks, include_generated=args.include_generated)
    if not args.allow_failures:
        _refuse_failed_runs(results)
    paths = write_report(results, args.out, plots=args.plots)
    print(markdown_report(results))
    logger.info("report written to %s", paths["markdown"])
    return 0


def _refuse_failed_runs(results: dict[str, Any]) -> None:
    """A run most of whose requests failed measured the server, not the model: say so instead of reporting it."""
    from seke_hf.evaluate.scoring import failures

    for name, result in results.items():
        failed, total, reason = failures(getattr(result, "scores", result))
        if total and failed * 2 > total:
            raise CLIError(
                f"{name}: {failed} of {total} questions failed ({reason}); its scores would measure the server, "
                "not the model, so no report was written. Check --base-url and that the server answers, then run "
                "again (answers received are cached), or pass --allow-failures to report it anyway."
            )


def _file_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") or "model"
