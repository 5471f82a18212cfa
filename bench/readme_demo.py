"""A fresh first run of `seke-hf demo`, printed as the README's "What it prints" block shows it.

    python bench/readme_demo.py [--small]

The demo runs in a new temporary folder with its own request cache (so the figures are those of a first run with the
current code: prompts, sampling, noise model) and its output folder is shown as `seke-hf-demo`, the default. It
prints the stage lines (stderr) then the summary (stdout), as a terminal shows them, and how long the run took; the
README's block is this output with long lines shortened by "...". `tests/test_readme_examples.py` checks that the
demo still prints lines of the block's shape (numbers aside).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FOLDER = "seke-hf-demo"
"""The demo's default output folder, as a reader who typed `seke-hf demo` sees it."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the --small demo (what the README test runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seke_demo_") as tmp:
        out = Path(tmp) / FOLDER
        command = [sys.executable, "-m", "seke_hf", "demo", "--out", str(out), "--port", "0"]
        started = time.monotonic()
        done = subprocess.run(command + (["--small"] if args.small else []), capture_output=True, text=True, check=True)
        wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print((done.stderr + done.stdout).replace(str(out), FOLDER), end="")
    print(f"\n(the demo took {wall:.1f} s, {usage.ru_utime + usage.ru_stime:.1f} s of CPU)", file=sys.stderr)


if __name__ == "__main__":
    main()
