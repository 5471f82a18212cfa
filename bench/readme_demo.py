"""Regenerate the README's "What it prints" block from a fresh run of `seke-hf demo`.

    python bench/readme_demo.py            # print the block (and how long the demo took)
    python bench/readme_demo.py --write    # replace the block in README.md

The demo runs in a new temporary folder with its own request cache, so the figures are those of a first run with the
current code (prompts, sampling, noise model). The block keeps the build summary (FEAB abridged to its first line),
the usage lines and the evaluation's overall expression row; `tests/test_readme_examples.py` checks that the demo
still prints lines of that shape.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FOLDER = "seke-hf-demo"
"""The demo's default output folder, as a reader who typed `seke-hf demo` sees it."""


def run_demo(out: Path) -> tuple[str, float, float]:
    """The demo's stdout, its wall time and its CPU time (seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "seke_hf", "demo", "--out", str(out), "--no-progress", "--port", "0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done.stdout, time.monotonic() - started, usage.ru_utime + usage.ru_stime


def abridged(stdout: str, out: Path) -> list[str]:
    """The README's block: the summary with FEAB's per-source lines elided, the usage lines (the server's shortened
    after its first clause) and the evaluation's expression table reduced to its header and overall row."""
    lines = [line.rstrip().replace(str(out), FOLDER) for line in stdout.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("seke-hf build: done"))
    block = [lines[start]]
    in_feab = False
    for line in lines[start + 1 :]:
        if line.startswith("  FEAB:"):
            block += [line, "    ..."]
            in_feab = True
        elif in_feab and line.startswith("    "):
            continue
        elif line.startswith("  simulated server:"):
            in_feab = False
            block.append(line.split(";")[0] + "; ...")
        elif line.startswith("  "):
            in_feab = False
            block.append(line)
        elif line.startswith("# FEAB evaluation"):
            break
    header = next(i for i, line in enumerate(lines) if line.startswith("| scope | model | n | accuracy"))
    overall = next(line for line in lines[header:] if line.startswith("| overall |"))
    return [*block, "", "# FEAB evaluation", "...", lines[header], lines[header + 1], overall]


def write(readme: Path, block: list[str]) -> None:
    text = readme.read_text()
    start = text.index("```\n", text.index("What it prints")) + 4
    end = text.index("```", start)
    readme.write_text(text[:start] + "\n".join(block) + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="replace the block in README.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seke_demo_") as tmp:
        out = Path(tmp) / FOLDER
        stdout, wall, cpu = run_demo(out)
        block = abridged(stdout, out)
    if any(re.search(r"/tmp|seke_demo_", line) for line in block):
        raise SystemExit("a temporary path leaked into the block:\n" + "\n".join(block))
    print("\n".join(block))
    print(f"\n(the demo took {wall:.1f} s, {cpu:.1f} s of CPU)", file=sys.stderr)
    if args.write:
        write(README, block)
        print(f"wrote the block into {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
