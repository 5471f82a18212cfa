"""The `seke-hf` command. Each subcommand lives in its own module here and exposes `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: tuple[str, ...] = ("demo", "build", "annotate", "publish", "evaluate", "simulate", "cache")
"""Subcommand modules, in the order `seke-hf --help` lists them."""


class CLIError(Exception):
    """An error whose message is the whole story: printed as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seke-hf",
        description="SEKE for Hugging Face datasets: load facial-affect corpora, build FEID/FEAB with SV-UAMC, "
        "publish them to the Hub and evaluate vision LLMs on FEAB.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"seke_hf.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own progress messages at INFO; third-party libraries (httpx logs every request) only from WARNING.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s")
    logging.getLogger("seke_hf").setLevel(logging.DEBUG if args.debug else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("seke-hf: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line unless --debug
        if args.debug:
            raise
        e = _cause(e)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"seke-hf {args.command}: error: {message} (run with --debug for details)", file=sys.stderr)
        return 1


def _cause(error: BaseException) -> BaseException:
    """The error itself, not `datasets`' wrapper around what a builder raised while writing a split."""
    while type(error).__name__ == "DatasetGenerationError" and error.__cause__ is not None:
        error = error.__cause__
    return error
