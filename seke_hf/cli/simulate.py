"""`seke-hf simulate`: serve the simulated vision LLM, for dry runs of a FEID build against a known truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seke_hf.cli import CLIError

EPILOG = """\
examples:
  # build the truth from a labelled corpus once, then serve it
  seke-hf simulate --corpus rafdb --data-dir ~/data/RAF-DB --save-truth truth.jsonl --port 8000
  seke-hf simulate --truth truth.jsonl --port 8000 --latency 0.2 --rate-limit 0.02
  # rehearse on a model that is a weak AU detector (see seke_hf.simulate.noise.PROFILES)
  seke-hf simulate --truth truth.jsonl --port 8000 --profile ambivalent-aus
  # every face a `seke-hf build --corpora-root /data/faces` will ask about, for a dry run of the whole build
  seke-hf simulate --corpora-root /data/faces --port 8000
  # then point any OpenAI client at http://127.0.0.1:8000/v1 and read http://127.0.0.1:8000/stats
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="serve a simulated vision LLM (OpenAI-compatible) that knows the truth",
        description="Serve a simulated vision LLM on 127.0.0.1 behind the OpenAI Chat Completions protocol. It "
        "answers facial-emotion questions from a truth table through a documented noise model, injects provider "
        "faults on demand, and reports token usage like the real API at /stats.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("truth (one of)")
    source.add_argument("--truth", type=Path, help="truth JSONL file (see seke_hf.simulate.truth)")
    source.add_argument("--corpus", help="build the truth from this corpus (ckplus, rafdb, ...)")
    source.add_argument("--data-dir", type=Path, help="folder of the corpus given with --corpus")
    source.add_argument("--split", default=None, help="split of --corpus to use (default: all splits)")
    source.add_argument(
        "--corpora-root",
        type=Path,
        help="the faces FEID and FEAB select from the corpora under this folder (what `seke-hf build "
        "--corpora-root` asks about, with the default selection)",
    )
    parser.add_argument("--save-truth", type=Path, help="write the truth table to this JSONL file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--model", default=None, help="model name to report (default: seke-sim-vllm)")
    parser.add_argument("--api-key", default=None, help="require this bearer key (default: accept any)")
    noise = parser.add_argument_group("noise model")
    noise.add_argument("--seed", type=int, default=0, help="seed of the per-image beliefs")
    noise.add_argument(
        "--profile",
        default="default",
        help="noise regime: default, ambivalent-aus, noisy-va, confident-errors or weak "
        "(see seke_hf.simulate.noise.PROFILES); --noise settings apply on top",
    )
    noise.add_argument(
        "--noise",
        action="append",
        default=[],
        metavar="NAME=RATE[,HARD]",
        help="set a noise-model rate, e.g. --noise expression_error=0.05,0.5 (see seke_hf.simulate.noise)",
    )
    faults = parser.add_argument_group("faults and provider behaviour")
    for kind in ("rate-limit", "server-error", "timeout", "truncate", "refusal"):
        faults.add_argument(f"--{kind}", type=float, default=0.0, metavar="RATE", help=f"{kind} fault rate")
    faults.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="added to every request")
    faults.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS")
    faults.add_argument("--timeout-delay", type=float, default=30.0, metavar="SECONDS")
    faults.add_argument("--max-n", type=int, default=128, help="reject requests with a larger n (1: no n > 1)")
    faults.add_argument(
        "--no-structured-output", action="store_true", help="reject response_format, like servers without schemas"
    )
    faults.add_argument(
        "--logprobs",
        choices=("return", "ignore", "refuse"),
        default="return",
        help="what logprobs=true gets: token log probabilities, null (like some servers) or an HTTP 400",
    )
    batches = parser.add_argument_group("Batch API (/v1/files, /v1/batches)")
    batches.add_argument(
        "--batch-delay", type=float, default=0.0, metavar="SECONDS", help="time from batch creation to completion"
    )
    batches.add_argument("--batch-line-error", type=float, default=0.0, metavar="RATE", help="batch lines that error")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from seke_hf.simulate import DEFAULT_MODEL, PROFILES, SimulatedVLLM, TruthTable, truth_from_dataset

    if args.profile not in PROFILES:
        raise CLIError(f"--profile {args.profile!r}: expected one of {', '.join(PROFILES)}")
    noise = dict(_noise_setting(text) for text in args.noise)
    given = [name for name in ("truth", "corpus", "corpora_root") if getattr(args, name) is not None]
    if len(given) != 1:
        raise CLIError("give the truth, one of: --truth truth.jsonl, --corpus NAME --data-dir DIR, --corpora-root DIR")
    if args.truth is not None:
        truth = TruthTable.load(args.truth)
    elif args.corpus is not None:
        if args.data_dir is None:
            raise CLIError("--corpus needs --data-dir (the folder of your copy of the corpus)")
        truth = truth_from_dataset(_rows(args.corpus, args.data_dir, args.split))
    else:
        truth = truth_from_dataset(_selected_rows(args.corpora_root), seed=args.seed)
    if args.save_truth is not None:
        truth.save(args.save_truth)
        print(f"wrote {len(truth)} truth entries to {args.save_truth}", flush=True)
    server = SimulatedVLLM(
        truth,
        host=args.host,
        port=args.port,
        model=args.model or DEFAULT_MODEL,
        api_key=args.api_key,
        profile=args.profile,
        seed=args.seed,
        rate_limit=args.rate_limit,
        server_error=args.server_error,
        timeout=args.timeout,
        truncate=args.truncate,
        refusal=args.refusal,
        latency=args.latency,
        retry_after=args.retry_after,
        timeout_delay=args.timeout_delay,
        max_n=args.max_n,
        structured_output=not args.no_structured_output,
        logprobs=args.logprobs,
        batch_delay=args.batch_delay,
        batch_line_error=args.batch_line_error,
        **noise,
    )
    server.start()
    print(
        f"simulated vision LLM '{server.model_name}' knows {len(truth)} faces; serving {server.base_url} "
        f"(usage at {server.url}/stats). Ctrl-C to stop.",
        flush=True,
    )
    server.serve_forever()
    return 0


def _noise_setting(text: str) -> tuple[str, Any]:
    from seke_hf.simulate import NoiseModel

    name, _, value = text.partition("=")
    names = sorted(NoiseModel.field_names() - {"seed"})
    if name not in names or not value:
        raise CLIError(f"--noise {text!r}: expected NAME=VALUE with NAME one of {', '.join(names)}")
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise CLIError(f"--noise {text!r}: the value must be a number or two numbers separated by a comma") from None
    return name, numbers[0] if len(numbers) == 1 else numbers


def _rows(corpus: str, data_dir: Path, split: str | None) -> Any:
    import datasets

    from seke_hf import load_corpus

    loaded = load_corpus(corpus, data_dir, split=split)
    if isinstance(loaded, datasets.DatasetDict):
        return datasets.concatenate_datasets(list(loaded.values()))
    return loaded


def _selected_rows(root: Path) -> Any:
    """FEID and FEAB with their human labels, as the default selection takes them from the corpora under `root`."""
    import datasets

    from seke_hf import feid

    if not root.is_dir():
        raise CLIError(f"--corpora-root {str(root)!r} is not a folder")
    splits = feid.build(root, progress=lambda line: None).datasets
    return datasets.concatenate_datasets(list(splits.values()))
