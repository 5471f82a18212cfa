"""What `seke-hf build` and `seke-hf demo` show while they work: one line per stage, `datasets`' bars on request."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import datasets


def print_stage(line: str) -> None:
    """One progress line (labels read, rows selected, images read, rows annotated, shards written)."""
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet_datasets(verbose: bool) -> Iterator[None]:
    """Without `verbose`, `datasets` shows no progress bar (Generating, Filter, Map, Creating parquet ...) and logs
    only errors; the previous state is restored on the way out, so a caller's own settings survive."""
    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    if not verbose:
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
        else:
            datasets.disable_progress_bars()
