"""What a FEID/FEAB build costs as the corpora grow with the selection fixed: today's path against labels-first.

Synthetic corpora at 1x, 4x and 16x size (frames per DISFA video and BP4D task, images per RAF-DB/AffectNet class,
frames per CK+ sequence), the same selection targets at every size, and per size, each path with a fresh cache:

- today's path: every corpus converted whole (`load_corpus`, images included), the selection on its rows, the rows
  taken by id (what `seke_hf.feid.build` did before the label pass);
- new path: `seke_hf.feid.build` (label pass, selection, images of the selected rows only).

Both then save FEID and FEAB with `save_to_disk`. Reported: wall seconds, CPU seconds of the process (all its
threads; steadier than wall time on a shared machine), disk (cache + outputs; nothing is deleted during a run, so
the end size is the peak), and whether both gave the same manifest. Then DISFA alone at the
largest size: seconds per selected frame of the new path against a bare PyAV decode of the same videos (every
frame, no conversion) and against a bare decode up to the last selected frame of each video.

    python bench/feid_build.py [--sizes 1 4 16] [--disfa-frames 150] [--disfa-size 512 384]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets

import seke_hf  # noqa: F401  (registers the builders)
from seke_hf import feid
from seke_hf.corpora import CORPORA, load_source
from seke_hf.corpus_roots import find_corpus_dirs
from seke_hf.loading_scripts.video_frames import require_av
from seke_hf.selection import FEAB_SPLIT, FEID_SPLIT, SelectionParams
from seke_hf.synthetic.affectnet import write_affectnet
from seke_hf.synthetic.affwild2 import write_affwild2
from seke_hf.synthetic.bp4d import write_bp4d
from seke_hf.synthetic.ckplus import write_ckplus
from seke_hf.synthetic.disfa import write_disfa
from seke_hf.synthetic.rafdb import write_rafdb

TARGETS = {"rafdb": (40, 10), "affectnet": (40, 8), "disfa": (40, 10), "bp4d": (30, 8), "affwild2": (20, 5)}
PARAMS = SelectionParams.from_dict({"targets": TARGETS, "min_frame_gap": {"disfa": 3, "bp4d": 2, "affwild2": 2}})


def write_root(root: Path, scale: int, disfa_frames: int, disfa_size: tuple[int, int]) -> None:
    """The six corpora at `scale` times the base size (Aff-Wild2's writer has one fixed size: it stays 1x)."""
    sequences = [s for s, _ in sorted(feid.ckplus_split().items())][:40]
    write_ckplus(root, sequences=sequences, frames=3 * scale, unlabelled=0)
    write_rafdb(root / "RAF-DB", n_train=70 * scale, n_test=28 * scale, original=False)
    write_affectnet(root / "AffectNet", n_per_code=4 * scale)
    write_disfa(root, n_frames=disfa_frames * scale, size=disfa_size, right_camera=False)
    write_bp4d(root, n_frames=12 * scale)
    write_affwild2(root / "Aff-Wild2")


def todays_path(root: Path, cache: Path) -> feid.Manifest:
    dirs = find_corpus_dirs(root)
    whole = {source: load_source(source, dirs[source], cache_dir=str(cache)) for source in CORPORA}
    manifest = feid.build_manifest(whole, PARAMS)
    for split in (FEID_SPLIT, FEAB_SPLIT):
        parts = []
        for source, corpus in whole.items():
            wanted = [e.sample_id for e in manifest if e.split == split and e.source == source]
            merged = datasets.concatenate_datasets(list(corpus.values()))
            position = {sample_id: i for i, sample_id in enumerate(merged["sample_id"])}
            parts.append(merged.select([position[i] for i in wanted]))
        datasets.concatenate_datasets(parts).save_to_disk(str(cache / "out" / split))
    return manifest


def new_path(root: Path, cache: Path) -> feid.Manifest:
    built = feid.build(root, params=PARAMS, cache_dir=str(cache), progress=lambda line: None)
    for split, ds in built.datasets.items():
        ds.save_to_disk(str(cache / "out" / split))
    return built.manifest


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def run(path_fn, root: Path, work: Path) -> tuple[float, float, float, feid.Manifest]:
    """Wall seconds, CPU seconds, MB on disk and the manifest of one path with a fresh cache."""
    cache = work / path_fn.__name__
    shutil.rmtree(cache, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    manifest = path_fn(root, cache)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = disk_mb(cache)
    shutil.rmtree(cache, ignore_errors=True)
    return seconds, cpu, size, manifest


def timed(function) -> tuple[float, float, object]:
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - start, time.process_time() - cpu, result


def bare_decode(videos: list[Path], last: dict[Path, int] | None = None) -> None:
    av = require_av()
    for video in videos:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, _ in enumerate(container.decode(stream)):
                if last is not None and index >= last[video]:
                    break


def disfa_alone(root: Path, work: Path) -> None:
    cache = work / "disfa"
    shutil.rmtree(cache, ignore_errors=True)
    seconds, cpu, built = timed(
        lambda: feid.build(root, sources=("disfa",), params=PARAMS, cache_dir=str(cache), progress=lambda line: None)
    )
    selected = len(built.manifest)
    videos = sorted((root / "DISFA").rglob("*.avi"))
    last = {}
    for video in videos:
        subject = video.stem.removeprefix("LeftVideo").removesuffix("_comp")
        frames = [int(e.sample_id.rsplit("/", 1)[1]) for e in built.manifest if f"/{subject}/" in e.sample_id]
        last[video] = max(frames, default=-1)
    full = timed(lambda: bare_decode(videos))
    upto = timed(lambda: bare_decode(videos, last))
    print(f"\nDISFA alone ({len(videos)} videos, {selected} selected frames; labels, selection and images):")
    print("| method | s (CPU s) | per selected frame: ms (CPU ms) | vs new path: s (CPU) |")
    print("|---|---:|---:|---:|")
    for name, (t, c, _) in (("new path (`feid.build`, DISFA only)", (seconds, cpu, None)),
                            ("bare PyAV decode, every frame", full),
                            ("bare PyAV decode, up to the last selected frame", upto)):  # fmt: skip
        print(f"| {name} | {t:.2f} ({c:.2f}) | {t / selected * 1000:.1f} ({c / selected * 1000:.1f}) | "
              f"{t / seconds:.2f}x ({c / cpu:.2f}x) |")
    shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--disfa-frames", type=int, default=150, help="frames per DISFA video at 1x")
    parser.add_argument("--disfa-size", type=int, nargs=2, default=[512, 384])
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    import logging

    logging.getLogger("seke_hf").setLevel(logging.ERROR)
    work = Path(args.work or tempfile.mkdtemp(prefix="feid_build_"))
    rows = []
    root = None
    for scale in args.sizes:
        root = work / f"root{scale}"
        shutil.rmtree(root, ignore_errors=True)
        write_root(root, scale, args.disfa_frames, tuple(args.disfa_size))
        old_s, old_cpu, old_mb, old_manifest = run(todays_path, root, work)
        new_s, new_cpu, new_mb, new_manifest = run(new_path, root, work)
        rows.append((scale, old_s, old_cpu, old_mb, new_s, new_cpu, new_mb, old_manifest == new_manifest,
                     len(new_manifest)))  # fmt: skip
        print(f"{scale}x done: today {old_s:.1f} s {old_mb:.1f} MB, new {new_s:.1f} s {new_mb:.1f} MB", flush=True)
    _, _, _, _, base_s, base_cpu, base_mb, _, _ = rows[0]
    print("\n| size | rows selected | today: s (CPU s) | today MB | new: s (CPU s) | new MB | new vs today: s (CPU) | "
          "new vs its 1x: s (CPU) | new MB vs its 1x | same manifest |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for scale, old_s, old_cpu, old_mb, new_s, new_cpu, new_mb, same, selected in rows:
        print(f"| {scale}x | {selected} | {old_s:.2f} ({old_cpu:.2f}) | {old_mb:.1f} | {new_s:.2f} ({new_cpu:.2f}) | "
              f"{new_mb:.1f} | {new_s / old_s:.2f}x ({new_cpu / old_cpu:.2f}x) | "
              f"{new_s / base_s:.2f}x ({new_cpu / base_cpu:.2f}x) | {new_mb / base_mb:.2f}x | "
              f"{'yes' if same else 'NO'} |")  # fmt: skip
    disfa_alone(root, work)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
