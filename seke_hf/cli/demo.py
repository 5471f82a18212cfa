"""`seke-hf demo`: see the whole system work in about half a minute, offline, with no corpus and no API key.

    seke-hf demo                      # writes ./seke-hf-demo
    seke-hf demo --out /tmp/demo --small

It writes synthetic faces in the raw layouts of the six corpora, starts a simulated vision LLM on 127.0.0.1, builds
FEID and FEAB through the real loaders with SV-UAMC (cached: a second run sends no request), adds the chat columns,
writes the Hub layout and reads it back with plain `load_dataset`, evaluates the simulated model on FEAB, and prints
a summary. To run for real, see `seke-hf build --help` and `seke-hf evaluate --help`.
"""

from __future__ import annotations

import argparse

from seke_hf.cli.stages import print_stage, quiet_datasets


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on synthetic faces against a simulated vision LLM (offline, keyless)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="seke-hf-demo", help="output folder (default: ./seke-hf-demo)")
    p.add_argument("--small", action="store_true", help="a few faces per corpus (about 10 s instead of 30 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=None, help="simulator port (default 8737; the cache is keyed by it)")
    p.add_argument("--verbose", action="store_true",
                   help="also show the progress bars of datasets and of the model requests")  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress line at all")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seke_hf.demo import run_demo
    from seke_hf.pipeline import render_summary

    options = {} if args.port is None else {"port": args.port}
    with quiet_datasets(args.verbose and args.progress):
        result = run_demo(
            args.out, seed=args.seed, small=args.small, progress=args.verbose and args.progress,
            stages=print_stage if args.progress else None, **options,
        )  # fmt: skip
    stats = result.server_stats
    print()
    print(render_summary(result.summary, result.out / "build"))
    annotation = result.summary.get("usage", {}).get("requests", 0)
    print(
        f"  simulated server: {stats.get('requests', 0)} requests this run ({annotation} for SV-UAMC, the rest for "
        f"the evaluation), {stats.get('choices', 0)} choices; the cost above is what the SV-UAMC requests would "
        "cost on GPT-4o"
    )
    print("  read back with plain datasets: " + ", ".join(f"{k} {n} rows" for k, n in result.reloaded_rows.items()))
    print()
    print(overall_rows(result.evaluation_markdown))
    print(f"Full report (per corpus, per AU, plots): {result.report_paths['markdown']}")
    print("Next: run for real with `seke-hf build --corpora-root DIR --out DIR --model gpt-4o` (see README).")
    return 0


def overall_rows(markdown: str) -> str:
    """The evaluation's headings and the overall row of each table, so the demo's output fits on one screen."""
    kept: list[str] = []
    table: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("#"):
            kept += [line] if line.startswith("# ") else ["", line]
        if not line.startswith("|"):
            table = []
        elif line.startswith("| overall "):
            kept += [*table[:2], line]
            table = table[:2]
        else:
            table.append(line)
    return "\n".join(kept)
