"""Converting a DISFA video into the unified schema: our builder against PyAV's limits, in one process.

A DISFA-like tree is generated once in --workdir (labels by `seke_hf.synthetic.disfa`, one left-camera video of
--frames frames at --size, with head motion and sensor noise so it compresses like camera footage rather than a
still drawing). Then, one after the other:

- decode limit: a plain PyAV loop decoding every frame (what any reader of this video must pay);
- decode + JPEG limit: the same loop converting every frame to RGB and JPEG (what storing every frame must pay);
- builder, all frames: `load_corpus("disfa", ..., split="train")` into a fresh cache;
- builder, frame_stride=10.

For each: wall time, frames/s, and the peak resident memory above the level before the step (sampled from
/proc/self/statm every 5 ms). Ratios are against the decode limit.

Run: python bench/convert_video.py [--frames 5000] [--size 1024x768] [--codec mpeg4] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image

from seke_hf import load_corpus
from seke_hf.loading_scripts.video_frames import require_av
from seke_hf.synthetic.disfa import disfa_frames, read_frame_number, stamp_height, write_disfa, write_video

SUBJECT = "SN001"
PAGE = 4096


class PeakMemory:
    """Peak resident set size during a `with` block, above the level when it started (Linux /proc)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.start, self.peak = interval, 0, 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def make_tree(workdir: Path, n_frames: int, size: tuple[int, int], codec: str, bit_rate: int) -> Path:
    """Labels for SN001 and its left-camera video, reused when already there."""
    root = workdir / f"disfa_{n_frames}_{size[0]}x{size[1]}_{codec}"
    video = root / "DISFA" / "Videos_LeftCamera" / f"LeftVideo{SUBJECT}_comp.avi"
    if video.is_file():
        return root
    write_disfa(root, subjects=(SUBJECT,), n_frames=n_frames, video=False)
    rng = np.random.default_rng(0)
    noise = [rng.integers(-6, 7, size=(size[1], size[0], 3), dtype=np.int16) for _ in range(7)]

    top = stamp_height(size[0])  # the rows above keep the frame-number stamp

    def camera_frames():
        for i, pixels in enumerate(disfa_frames(1, [frozenset()] * n_frames, size)):
            shift = (int(10 * np.sin(i / 17)), int(14 * np.sin(i / 29)))  # slow head motion
            moved = np.roll(pixels[top:], shift, axis=(0, 1)).astype(np.int16) + noise[i % 7][top:]
            pixels[top:] = np.clip(moved, 0, 255).astype(np.uint8)
            yield pixels

    started = time.perf_counter()
    write_video(video.with_suffix(".tmp.avi"), camera_frames(), size=size, codec=codec, bit_rate=bit_rate)
    video.with_suffix(".tmp.avi").rename(video)
    print(f"generated {n_frames} frames at {size[0]}x{size[1]} ({codec}) in {time.perf_counter() - started:.0f} s")
    return root


def decode_all(video: Path, to_jpeg: bool) -> int:
    av = require_av()
    count = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if to_jpeg:
                buffer = io.BytesIO()
                PIL.Image.fromarray(frame.to_ndarray(format="rgb24")).save(buffer, format="JPEG", quality=95)
            count += 1
    return count


def run_builder(root: Path, workdir: Path, stride: int) -> int:
    cache = workdir / f"cache_stride{stride}"
    shutil.rmtree(cache, ignore_errors=True)
    try:
        ds = load_corpus("disfa", root, split="train", frame_stride=stride, cache_dir=str(cache))
        assert all(read_frame_number(ds[i]["image"]) == ds[i]["frame"] for i in (0, len(ds) - 1)), "frames misaligned"
        return len(ds)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def measure(name: str, video_frames: int, fn: Callable[[], int]) -> dict[str, Any]:
    with PeakMemory() as memory:
        started = time.perf_counter()
        rows = fn()
        seconds = time.perf_counter() - started
    return {"name": name, "rows": rows, "seconds": seconds, "video_fps": video_frames / seconds,
            "rows_fps": rows / seconds, "extra_mb": memory.extra_mb}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT (DISFA: 1024x768)")
    parser.add_argument("--codec", default="mpeg4", help="mpeg4 (like DISFA's _comp.avi) or mjpeg (intra-only)")
    parser.add_argument("--bit-rate", type=int, default=6_000_000, help="bits/s at 20 fps")
    parser.add_argument("--workdir", default=None, help="where the generated tree is kept (default: a temp dir)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seke_bench_video_"))
    datasets.disable_progress_bars()

    root = make_tree(workdir, args.frames, size, args.codec, args.bit_rate)
    video = next((root / "DISFA" / "Videos_LeftCamera").glob("*.avi"))
    n = args.frames
    results = [
        measure("PyAV loop, decode every frame (decode limit)", n, lambda: decode_all(video, to_jpeg=False)),
        measure("PyAV loop, decode + JPEG every frame", n, lambda: decode_all(video, to_jpeg=True)),
        measure("builder, all frames", n, lambda: run_builder(root, workdir, 1)),
        measure("builder, frame_stride=10", n, lambda: run_builder(root, workdir, 10)),
    ]
    limit = results[0]["video_fps"]
    whole_video_gb = n * size[0] * size[1] * 3 / 2**30
    print(f"\n{n} frames, {size[0]}x{size[1]}, {args.codec}, {video.stat().st_size / 2**20:.0f} MB on disk; the whole "
          f"video as RGB arrays would take {whole_video_gb:.1f} GB\n")  # fmt: skip
    print("| run | rows | seconds | video frames/s | rows/s | vs decode limit | peak extra RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['name']} | {r['rows']} | {r['seconds']:.1f} | {r['video_fps']:.0f} | {r['rows_fps']:.0f} | "
              f"{r['video_fps'] / limit:.2f}x | {r['extra_mb']:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
