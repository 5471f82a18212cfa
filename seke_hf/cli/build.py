"""`seke-hf build`: FEID and FEAB from your corpora, end to end: selection, SV-UAMC annotation, instruction data.

    seke-hf build --corpora-root /data/faces --out feid_build/ --model gpt-4o
    seke-hf build --corpora-root /data/faces --out dry/ --base-url http://127.0.0.1:8000/v1 --limit 20
    seke-hf build --corpora-root /data/faces --out feid_build/ --manifest feid_build_v1/manifest.csv --no-annotate

ROOT holds the corpora under their usual folder names (CK+, RAF-DB, AffectNet, DISFA, BP4D, Aff-Wild2); those
found are used, the others named in a warning. What the output folder holds is described in `seke_hf.pipeline`.
The API key comes from OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from seke_hf.annotate.batch_run import BatchPending
from seke_hf.cli import CLIError
from seke_hf.cli.stages import print_stage, quiet_datasets
from seke_hf.cli.svuamc_options import add_svuamc_arguments, annotator_from_args, report_failed_rows, report_pending
from seke_hf.corpora import CORPORA
from seke_hf.selection import SelectionParams

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build",
        help="build FEID and FEAB from the corpora under a folder (selection, annotation, instruction data)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--corpora-root", required=True, help="folder holding CK+/, RAF-DB/, AffectNet/, DISFA/, ...")
    p.add_argument("--out", help="output folder (required unless --estimate)")
    p.add_argument(
        "--corpus-path",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="explicit folder of one corpus, e.g. rafdb=/data/RAF (repeatable)",
    )
    p.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of corpora to use")
    p.add_argument("--manifest", default=None, help="rebuild exactly this manifest CSV instead of selecting")
    p.add_argument("--seed", type=int, default=0, help="selection and phrasing seed")
    p.add_argument(
        "--selection", default=None, help='JSON overrides of the selection, e.g. \'{"targets": {"rafdb": [100, 20]}}\''
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N rows of each dataset (dry runs)")
    p.add_argument("--no-annotate", dest="annotate", action="store_false", help="skip SV-UAMC (human labels only)")
    add_svuamc_arguments(p)
    p.add_argument("--batch-size", type=int, default=64, help="rows annotated concurrently per map batch")
    p.add_argument(
        "--style",
        choices=("placeholder", "typed"),
        default="placeholder",
        help="chat content: <image> placeholders (LLaMA-Factory, ms-swift) or TRL typed blocks",
    )
    p.add_argument(
        "--release",
        choices=("full", "annotations"),
        default="full",
        help="hub/ layout with images (local use) or annotations only (publishable)",
    )
    p.add_argument("--repo-id", default=None, help="Hub id shown in the cards' examples, e.g. org/feid")
    p.add_argument("--verbose", action="store_true",
                   help="also show the progress bars of datasets and of the model requests")  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress line at all")
    p.add_argument(
        "--estimate",
        type=int,
        nargs="?",
        const=50,
        default=None,
        metavar="ROWS",
        help="annotate ROWS rows (default 50) online and print the projected cost of the whole build, "
        "online and batch; nothing else is built",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seke_hf.pipeline import build_datasets, render_summary

    sources = tuple(s.strip() for s in args.corpora.split(",") if s.strip())
    unknown = set(sources) - set(CORPORA)
    if unknown:
        raise CLIError(f"unknown corpora {sorted(unknown)}; expected some of {', '.join(CORPORA)}")
    if args.estimate is not None:
        return _estimate(args, sources)
    if args.out is None:
        raise CLIError("--out is required (the output folder)")
    # The annotator's own progress bar only with --verbose: the stage lines say what it did.
    bars = argparse.Namespace(**{**vars(args), "progress": args.verbose and args.progress})
    annotator = annotator_from_args(bars) if args.annotate else None
    try:
        with quiet_datasets(args.verbose and args.progress):
            result = _build(args, build_datasets, annotator, sources)
    except BatchPending as pending:
        return report_pending("build", pending)
    print(render_summary(result.summary, result.out))
    # with --max-cost, rows the budget did not reach are expected: reported, not an error
    _report_failures(result.summary, args.allow_failures or args.max_cost is not None)
    return 0


def _estimate(args: argparse.Namespace, sources: tuple[str, ...]) -> int:
    """The selection as the build makes it, a sample of it annotated online, the projected cost of all of it."""
    from seke_hf import feid
    from seke_hf.annotate.estimate import estimate_cost
    from seke_hf.pipeline import KINDS

    if args.estimate < 1:
        raise CLIError("--estimate takes a number of rows of at least 1")
    with quiet_datasets(args.verbose and args.progress):
        selected = feid.build(
            args.corpora_root,
            paths=_corpus_paths(args.corpus_path),
            sources=sources,
            manifest=args.manifest,
            params=_selection_params(args),
        )
    parts = {kind: selected.datasets[split] for kind, split in KINDS.items()}
    annotator = annotator_from_args(args)
    if not annotator.prices.known:
        raise CLIError("--estimate needs prices for this endpoint: give --prices NAME or --price-input/-output")
    print(estimate_cost(annotator, parts, rows=args.estimate, batch_size=args.batch_size).render())
    return 0


def _build(args: argparse.Namespace, build_datasets: Any, annotator: Any, sources: tuple[str, ...]) -> Any:
    return build_datasets(
        args.corpora_root,
        args.out,
        annotator=annotator,
        sources=sources,
        paths=_corpus_paths(args.corpus_path),
        manifest=args.manifest,
        params=_selection_params(args),
        limit=args.limit,
        batch_size=args.batch_size,
        style=args.style,
        release=args.release,
        repo_id=args.repo_id,
        seed=args.seed,
        progress=print_stage if args.progress else lambda line: None,
    )


def _report_failures(summary: dict, allow: bool) -> None:
    counts = [entry.get("status") or {} for entry in summary["datasets"].values()]
    failed, total = sum(c.get("failed", 0) for c in counts), sum(sum(c.values()) for c in counts)
    report_failed_rows("build", failed, total, allow)


def _selection_params(args: argparse.Namespace) -> SelectionParams:
    try:
        overrides = json.loads(args.selection) if args.selection else {}
    except json.JSONDecodeError as e:
        raise CLIError(f"--selection is not valid JSON: {e}") from None
    return SelectionParams.from_dict({"seed": args.seed, **overrides})


def _corpus_paths(items: list[str]) -> dict[str, str]:
    paths = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise CLIError(f"--corpus-path takes NAME=DIR (e.g. rafdb=/data/RAF), got {item!r}")
        paths[name.strip()] = folder.strip()
    return paths
