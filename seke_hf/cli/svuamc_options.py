"""The SV-UAMC options of the commands that annotate (`build`, `annotate`): declared once, so both take the same."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from seke_hf.cli import CLIError
from seke_hf.cli.endpoint import check_reachable, is_openai, require_api_key, resolve_base_url

if TYPE_CHECKING:
    from seke_hf.annotate import SVUAMCAnnotator
    from seke_hf.llm import Prices

logger = logging.getLogger(__name__)


def add_svuamc_arguments(p: argparse.ArgumentParser) -> None:
    """The vision LLM to ask and the sampling settings (defaults are `SVUAMCAnnotator`'s)."""
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI)")
    p.add_argument("--min-samples", type=int, default=4, help="label-only votes of the first sampling request")
    p.add_argument("--max-samples", type=int, default=12, help="votes at most per example")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--confidence", type=float, default=0.95, help="stopping confidence of the expression vote")
    p.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip the greedy (temperature-0) anchor answer"
    )
    p.add_argument(
        "--no-logprobs",
        dest="logprobs",
        action="store_false",
        help="do not ask for the greedy answer's token probabilities (a server that refuses them is asked without)",
    )
    p.add_argument("--max-concurrency", type=int, default=32)
    p.add_argument("--max-retries", type=int, default=6, help="retries of a failing request (backoff from 1 s)")
    p.add_argument("--image-max-side", type=int, default=512, help="images are resized to this longer side")
    p.add_argument("--cache-dir", default=None, help="request cache (default: SEKE_HF_CACHE or ~/.cache/seke_hf)")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when most rows failed to annotate")
    add_price_arguments(p)
    add_cost_arguments(p)


def add_cost_arguments(p: argparse.ArgumentParser) -> None:
    """How answers are bought: the Batch API (half price, within 24 h) or offline files, and a spending cap."""
    g = p.add_argument_group("batch mode and budget")
    g.add_argument(
        "--batch",
        action="store_true",
        help="send each sampling round of all rows as one Batch API job (half price; resumable)",
    )
    g.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="with --batch: submit the next round and exit (exit code 75); run again to pick up",
    )
    g.add_argument("--poll-interval", type=float, default=30.0, metavar="SECONDS", help="with --batch: poll period")
    g.add_argument(
        "--batch-export",
        default=None,
        metavar="DIR",
        help="write each round's requests as Batch API JSONL here (for vllm run-batch); implies --batch",
    )
    g.add_argument(
        "--batch-import",
        action="append",
        default=[],
        metavar="FILE",
        help="read the results of an exported round (repeatable); implies --batch",
    )
    g.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="never send what would take this run's spend past USD (rows not reached end failed, "
        "reason budget; a re-run with a larger budget continues from the cache)",
    )


def add_price_arguments(p: argparse.ArgumentParser) -> None:
    """What the cost estimate is priced at: a named price list, explicit prices, or none."""
    prices = p.add_argument_group("prices of the cost estimate (US dollars per 1M tokens)")
    prices.add_argument(
        "--prices",
        default=None,
        metavar="NAME",
        help="a price list: gpt-4o, gpt-4o-mini, or none (default: the model's list prices on OpenAI's endpoint; "
        "elsewhere, not priced)",
    )
    prices.add_argument("--price-input", type=float, default=None, metavar="USD", help="per 1M prompt tokens")
    prices.add_argument(
        "--price-cached-input",
        type=float,
        default=None,
        metavar="USD",
        help="per 1M prompt tokens the provider serves from its prompt cache (default: --price-input)",
    )
    prices.add_argument("--price-output", type=float, default=None, metavar="USD", help="per 1M completion tokens")


def prices_from_args(args: argparse.Namespace, base_url: str) -> Prices:
    """Explicit prices, else the named list, else the model's list prices on OpenAI's endpoint, else not priced."""
    from seke_hf.llm.usage import PRICE_TABLE, Prices

    explicit = (args.price_input, args.price_cached_input, args.price_output)
    if any(v is not None for v in explicit):
        if args.price_input is None or args.price_output is None:
            raise CLIError("give both --price-input and --price-output (and --price-cached-input if it differs)")
        cached = args.price_input if args.price_cached_input is None else args.price_cached_input
        return Prices(args.price_input, cached, args.price_output)
    if args.prices is not None:
        if args.prices == "none":
            return Prices.unknown()
        if args.prices not in PRICE_TABLE:
            raise CLIError(f"--prices {args.prices!r}: expected one of {', '.join(PRICE_TABLE)}, or none")
        return PRICE_TABLE[args.prices]
    return default_prices(args.model, base_url)


def default_prices(model: str, base_url: str) -> Prices:
    """The list prices of `model` (longest matching name, so dated snapshots count) when OpenAI serves it."""
    from seke_hf.llm.usage import PRICE_TABLE, Prices

    if is_openai(base_url):
        for name in sorted(PRICE_TABLE, key=len, reverse=True):
            if model == name or model.startswith(name + "-"):
                return PRICE_TABLE[name]
    return Prices.unknown()


def annotator_from_args(args: argparse.Namespace, **options: Any) -> SVUAMCAnnotator:
    """The annotator the parsed options describe (the API key comes from OPENAI_API_KEY, never the command line),
    once the endpoint has a key if it needs one and answers."""
    from seke_hf.annotate import SVUAMCAnnotator
    from seke_hf.annotate.batch_run import BatchOptions

    batch = None
    if args.batch or args.batch_export or args.batch_import:
        batch = BatchOptions(
            wait=args.wait,
            poll_interval=args.poll_interval,
            export_dir=args.batch_export,
            import_files=tuple(args.batch_import),
        )
    base_url = resolve_base_url(args.base_url)
    prices = prices_from_args(args, base_url)
    if args.max_cost is not None and not prices.known:
        raise CLIError(f"--max-cost needs prices, and {base_url} has none: give --prices NAME or --price-input/-output")
    require_api_key(base_url)
    check_reachable(base_url)
    return SVUAMCAnnotator(
        model=args.model,
        base_url=base_url,
        prices=prices,
        min_samples=args.min_samples,
        max_samples=args.max_samples,
        temperature=args.temperature,
        confidence=args.confidence,
        verify=args.verify,
        logprobs=args.logprobs,
        max_concurrency=args.max_concurrency,
        max_retries=args.max_retries,
        image_max_side=args.image_max_side,
        cache_dir=args.cache_dir,
        progress=args.progress,
        batch=batch or False,
        max_cost=args.max_cost,
        **options,
    )


def report_failed_rows(command: str, failed: int, total: int, allow: bool) -> None:
    """Rows whose requests failed are retried by the next run: say so; most rows failed is an error (unless
    `allow`), since such a result measures the server, not the data."""
    if not failed:
        return
    message = (
        f"{failed} of {total} rows failed to annotate; run the same command again to retry them (answers already "
        "received are cached)"
    )
    if failed * 2 > total and not allow:
        raise CLIError(f"{message}. Pass --allow-failures to accept such a result.")
    logger.warning("seke-hf %s: %s.", command, message)


PENDING_EXIT = 75
"""Exit code of a run that is waiting for batches (EX_TEMPFAIL): `until seke-hf build --batch --no-wait ...; do
sleep 600; done` loops until the build is written."""


def report_pending(command: str, pending: Exception) -> int:
    print(f"seke-hf {command}: waiting for batches: {pending}", flush=True)
    return PENDING_EXIT
