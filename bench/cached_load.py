"""How long a cached `load_dataset("rafdb", data_dir=...)` takes on a 20,000-image RAF-DB tree, against datasets' own
packaged-module path (`load_dataset("imagefolder", data_dir=...)`) on the same folder, in one process.

The packaged path resolves its data files by globbing and statting every file under data_dir on every call, cached
or not; seke_hf's registration keys the cache by a stat of the label file and the image folders only.

    python bench/cached_load.py [--images 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub

import datasets

import seke_hf  # noqa: F401  (registers the builders)
from seke_hf.loading_scripts.rafdb import RAFDB_EXPRESSIONS
from seke_hf.synthetic.faces import face_bytes

TRAIN_SHARE = 12_271 / 15_339
"""RAF-DB basic's train share (docs/corpora.md §2.1)."""
VARIANTS = 64


def write_tree(root: Path, images: int) -> Path:
    """A RAF-DB basic tree with `images` tiny aligned JPEGs (a few distinct pictures, repeated) and its label file."""
    base = root / "basic"
    aligned = base / "Image" / "aligned"
    aligned.mkdir(parents=True)
    (base / "EmoLabel").mkdir()
    pictures = [face_bytes(seed, size=(24, 24)) for seed in range(VARIANTS)]
    n_train = round(images * TRAIN_SHARE)
    stems = [f"train_{i:05d}" for i in range(1, n_train + 1)] + [
        f"test_{i:04d}" for i in range(1, images - n_train + 1)
    ]
    lines = []
    for i, stem in enumerate(stems):
        (aligned / f"{stem}_aligned.jpg").write_bytes(pictures[i % VARIANTS])
        lines.append(f"{stem}.jpg {1 + i % len(RAFDB_EXPRESSIONS)}")
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return base


def timed(function, repeat: int = 1) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="cached calls timed (median)")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="seke_bench_") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        base = write_tree(tmp / "RAF-DB", args.images)
        print(f"wrote {args.images} images in {time.perf_counter() - start:.1f} s")
        cache = str(tmp / "cache")

        def ours():
            return datasets.load_dataset("rafdb", data_dir=str(base), cache_dir=cache)

        def baseline():
            return datasets.load_dataset("imagefolder", data_dir=str(base), cache_dir=cache)

        first = timed(ours)
        rows = sum(ours().num_rows.values())
        cached = timed(ours, args.repeat)
        base_first = timed(baseline)
        base_rows = sum(baseline().num_rows.values())
        base_cached = timed(baseline, args.repeat)

    print(f"rows: rafdb {rows}, imagefolder {base_rows}")
    print("| call | time (s) | vs seke_hf cached |")
    print("|---|---:|---:|")
    for name, value in (
        ('`load_dataset("rafdb")` first build', first),
        ('`load_dataset("rafdb")` cached', cached),
        ('`load_dataset("imagefolder")` first build (baseline)', base_first),
        ('`load_dataset("imagefolder")` cached (baseline)', base_cached),
    ):
        print(f"| {name} | {value:.3f} | {value / cached:.0f}x |")
    print(f"cached-call speed-up over the packaged-module path: {base_cached / cached:.0f}x")


if __name__ == "__main__":
    main()
