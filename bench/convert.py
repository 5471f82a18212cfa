"""How fast does a raw corpus tree become a unified Arrow dataset, and at what memory?

Generates (once, reused through `--work`) a classic AffectNet tree of realistic web images (400-600 px JPEGs of
30-60 KB, each file unique), or an Aff-Wild2 tree (`--corpus affwild2`: four long videos of 112 px crops with VA,
EXPR and AU files), and measures, each in a fresh subprocess so that peak RSS is clean:

  read        plain Python reading every image file's bytes (the disk limit, no Arrow written)
  copy        the same, appending the bytes to one file in the cache folder (what any conversion must at least do)
  imagefolder datasets' "imagefolder" on the same images (it stores their paths, not their bytes)
  full        our AffectNet loader, config "full" (bytes passed through, labels parsed, Arrow written)
  cropped     our AffectNet loader, config "cropped" (every image decoded, cropped, re-encoded)
  frames      our Aff-Wild2 loader (three tasks merged per frame, bytes passed through)

imagefolder and our loaders are timed building their Arrow cache (`builder.download_and_prepare()`).

    python bench/convert.py --repeat 2            # AffectNet, 5000 and 20000 images, work dir /tmp/seke_bench
    python bench/convert.py --corpus affwild2 --sizes 5000 40000
    python bench/convert.py --sizes 2000 --work /tmp/seke_bench_small
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

KINDS = {
    "affectnet": ("read", "copy", "imagefolder", "full", "cropped"),
    "affwild2": ("read", "copy", "imagefolder", "frames"),
}
BASELINES = ("read", "copy", "imagefolder")
VIDEOS = 4
BASE_IMAGES = 32
"""Distinct base pictures; every file is one of them with a unique comment segment (so no two files are equal)."""
IMAGES = Path("Manually_Annotated", "Manually_Annotated_Images")


# -- the tree ----------------------------------------------------------------------------------------------------


def base_images(seed: int = 0) -> list[tuple[bytes, tuple[int, int, int, int], str]]:
    """(JPEG bytes, face box, expression) of web-like pictures with photographic noise, 400-600 px."""
    from seke_hf.loading_scripts.affectnet import AFFECTNET_EXPRESSIONS
    from seke_hf.synthetic.affectnet import web_image
    from seke_hf.synthetic.faces import seed_of

    rng = np.random.default_rng(seed)
    bases = []
    for i in range(BASE_IMAGES):
        width, height = (int(v) for v in rng.integers(400, 601, size=2))
        side = int(rng.integers(150, min(width, height) - 50))
        box = (int(rng.integers(0, width - side)), int(rng.integers(0, height - side)), side, side)
        expression = AFFECTNET_EXPRESSIONS[i % 8]
        picture = PIL.Image.open(io.BytesIO(web_image(seed_of("bench", i), (width, height), box, expression)))
        noisy = np.asarray(picture, dtype=np.int16) + rng.normal(0, 9, size=(height, width, 3)).astype(np.int16)
        buffer = io.BytesIO()
        PIL.Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=80)
        bases.append((buffer.getvalue(), box, expression))
    return bases


def unique_jpeg(base: bytes, index: int) -> bytes:
    """`base` with a COM segment naming `index` right after SOI: a different, still valid file."""
    comment = f"seke-hf bench image {index}".encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def write_pool(pool: Path, count: int) -> None:
    """`count` unique images and their CSV rows in `pool` (extended, never rewritten, across runs)."""
    from seke_hf.loading_scripts.affectnet import AFFECTNET_EXPRESSIONS
    from seke_hf.synthetic.affectnet import classic_csv_line, landmarks_in

    pool.mkdir(parents=True, exist_ok=True)
    rows_file = pool / "rows.csv"
    done = len(rows_file.read_text().splitlines()) if rows_file.exists() else 0
    if done >= count:
        return
    codes = {name: code for code, name in AFFECTNET_EXPRESSIONS.items()}
    bases = base_images()
    rng = np.random.default_rng(done)
    with open(rows_file, "a") as rows:
        for i in range(done, count):
            data, box, expression = bases[i % len(bases)]
            rel = f"{i % 1000}/{hashlib.sha224(f'bench/{i}'.encode()).hexdigest()}.jpg"
            (pool / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            (pool / "images" / rel).write_bytes(unique_jpeg(data, i))
            valence, arousal = (round(float(v), 4) for v in rng.uniform(-1, 1, size=2))
            rows.write(classic_csv_line(rel, box, landmarks_in(box), codes[expression], valence, arousal) + "\n")


def make_tree(work: Path, size: int) -> Path:
    """An AffectNet classic tree of the pool's first `size` images (hard links: no copy)."""
    from seke_hf.synthetic.affectnet import CLASSIC_HEADER

    pool = work / "pool"
    write_pool(pool, size)
    tree = work / f"affectnet_{size}"
    if (tree / "Manually_Annotated_file_lists" / "training.csv").exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    lines = (pool / "rows.csv").read_text().splitlines()[:size]
    for line in lines:
        rel = line.split(",", 1)[0]
        (tree / IMAGES / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(pool / "images" / rel, tree / IMAGES / rel)
    (tree / "Manually_Annotated_file_lists").mkdir(parents=True)
    (tree / "Manually_Annotated_file_lists" / "training.csv").write_text("\n".join([CLASSIC_HEADER, *lines]) + "\n")
    return tree


def make_affwild2_tree(work: Path, size: int) -> Path:
    """`VIDEOS` videos of `size // VIDEOS` frames each, every frame labelled in all three tasks (ABAW5 layout)."""
    from seke_hf.synthetic.affwild2 import ABAW_AUS, EDITIONS, EXPR_CLASSES
    from seke_hf.synthetic.faces import face_bytes, seed_of

    tree = work / f"affwild2_{size}"
    if (tree / "complete").exists():
        return tree
    folder, task_folders, _ = EDITIONS["abaw5"]
    bases = [face_bytes(seed_of("bench", i), size=(112, 112)) for i in range(BASE_IMAGES)]
    rng = np.random.default_rng(0)
    per_video = size // VIDEOS
    for v in range(VIDEOS):
        video = f"{v}-30-640x360"
        (tree / "cropped_aligned" / video).mkdir(parents=True, exist_ok=True)
        for k in range(1, per_video + 1):
            (tree / "cropped_aligned" / video / f"{k:05d}.jpg").write_bytes(unique_jpeg(bases[k % BASE_IMAGES], k))
        va = rng.uniform(-1, 1, size=(per_video, 2)).round(3)
        lines = {
            "VA": ["valence,arousal", *(f"{a},{b}" for a, b in va)],
            "EXPR": [",".join(EXPR_CLASSES), *map(str, rng.integers(0, len(EXPR_CLASSES), size=per_video))],
            "AU": [
                ",".join(ABAW_AUS),
                *(",".join(map(str, r)) for r in rng.integers(0, 2, (per_video, len(ABAW_AUS)))),
            ],
        }
        for task, text in lines.items():
            path = tree / folder / task_folders[task] / "Train_Set" / f"{video}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(text) + "\n")
    (tree / "complete").touch()
    return tree


def image_dir(tree: Path) -> Path:
    return tree / "cropped_aligned" if (tree / "cropped_aligned").is_dir() else tree / IMAGES


# -- one measurement (run in its own process) --------------------------------------------------------------------


def measure(kind: str, tree: Path) -> dict[str, float]:
    cache = tempfile.mkdtemp(prefix="seke_bench_cache_")
    os.environ["HF_DATASETS_CACHE"] = cache
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    import datasets

    import seke_hf  # noqa: F401  (registers "affectnet" with datasets)

    datasets.logging.set_verbosity_error()
    rss_before = memory_mb("VmRSS")
    start = time.perf_counter()
    try:
        if kind == "read":
            n = sum(len(path.read_bytes()) > 0 for path in sorted(image_dir(tree).rglob("*.jpg")))
        elif kind == "copy":
            with open(os.path.join(cache, "copy.bin"), "wb") as sink:
                n = sum(sink.write(path.read_bytes()) > 0 for path in sorted(image_dir(tree).rglob("*.jpg")))
        else:  # build the Arrow cache only: loading it would memory-map the result and count its pages as RSS
            if kind == "imagefolder":
                builder = datasets.load_dataset_builder("imagefolder", data_dir=str(image_dir(tree)), drop_labels=True,
                                                        cache_dir=cache)  # fmt: skip
            elif kind == "frames":
                builder = datasets.load_dataset_builder("affwild2", data_dir=str(tree), cache_dir=cache)
            else:
                builder = datasets.load_dataset_builder("affectnet", kind, data_dir=str(tree), cache_dir=cache)
            builder.download_and_prepare()
            n = builder.info.splits["train"].num_examples
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"rows": n, "seconds": seconds, "peak_rss_mb": memory_mb("VmHWM"), "import_rss_mb": rss_before}


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux carries that over from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(kind: str, tree: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--tree", str(tree)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the report -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "seke_bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--corpus", choices=sorted(KINDS), default="affectnet")
    parser.add_argument("--repeat", type=int, default=1, help="best of N interleaved runs per method")
    parser.add_argument(
        "--measure", choices=sorted({k for kinds in KINDS.values() for k in kinds}), help=argparse.SUPPRESS
    )
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.tree)))
        return

    ratios = " | ".join(f"time / {base}" for base in BASELINES)
    print(f"| images | MB | method | rows/s | seconds | peak RSS MB (after imports) | {ratios} |")
    print("|---:|---:|---|---:|---:|---:|" + "---:|" * len(BASELINES))
    for size in sorted(args.sizes):
        tree = (make_tree if args.corpus == "affectnet" else make_affwild2_tree)(args.work, size)
        megabytes = sum(p.stat().st_size for p in image_dir(tree).rglob("*.jpg")) / 1e6
        run("read", tree)  # warm the page cache: every method then reads from memory
        results: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):  # interleaved, best of N: a shared machine's load drifts
            for kind in KINDS[args.corpus]:
                r = run(kind, tree)
                if kind not in results or r["seconds"] < results[kind]["seconds"]:
                    results[kind] = r
        for kind, r in results.items():
            ratios = " | ".join(f"{r['seconds'] / results[base]['seconds']:.2f}x" for base in BASELINES)
            print(
                f"| {size} | {megabytes:.0f} | {kind} | {r['rows'] / r['seconds']:,.0f} | {r['seconds']:.2f} | "
                f"{r['peak_rss_mb']:.0f} ({r['import_rss_mb']:.0f}) | {ratios} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
