"""What FEID/FEAB's own steps cost, each against a baseline run in the same process.

1. selection: `seke_hf.selection.select` on paper-scale metadata tables (DISFA 130,814 frames, BP4D 146,847,
   AffectNet 287,651 + 3,999, RAF-DB 12,271 + 3,068, Aff-Wild2 ~600k frames, all times `--scale`), against one plain
   pass over the same rows (reading each row's label levels and active AUs): the protocol's cost in passes.
2. merge_annotations (one Arrow `take` per column) against the obvious `Dataset.map` that looks each row up in a
   dict of annotation rows, on `--rows` rows carrying small images.
3. attach_images (one Arrow `take` per corpus split) against a `Dataset.map` that fetches each row's image by index
   from the corpus, on a generated RAF-DB of `--faces` images.

    python bench/feid_release.py [--scale 0.1] [--rows 20000] [--faces 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np

import seke_hf
from seke_hf import selection
from seke_hf.release import attach_images, export_annotations, merge_annotations
from seke_hf.schema import AUS, FEATURES, active_aus, annotated_levels, aus_from_active, not_coded_aus
from seke_hf.synthetic.faces import face_bytes
from seke_hf.synthetic.rafdb import write_rafdb

# Paper-scale row counts: docs/corpora.md §2-§6 (Aff-Wild2 rounded down: ~2.8M frames, of which we assume ~600k labelled
# crops survive a usual frame stride).
SIZES = {
    "rafdb": {"train": 12_271, "test": 3_068},
    "affectnet": {"train": 287_651, "validation": 3_999},
    "disfa": {"subjects": 27, "frames": 4_845},
    "bp4d": {"subjects": 41, "tasks": 8, "frames": 448},
    "affwild2": {"train": 400, "validation": 100, "frames": 1_200},
}


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def metadata_tables(scale: float, seed: int = 0) -> dict[str, list[dict]]:
    """Synthetic metadata of paper-scale corpora; AU structs are shared from a small pool to keep memory low."""
    rng = np.random.default_rng(seed)
    pool = [aus_from_active(rng.choice(AUS, size=rng.integers(0, 5), replace=False)) for _ in range(400)]
    au12 = [aus_from_active(rng.choice(AUS[:12], size=rng.integers(0, 4), replace=False), AUS[:12]) for _ in range(200)]
    none = not_coded_aus()

    def row(sample_id, split, subject="", frame=None, expression=-1, valence=None, arousal=None, aus=none):
        return {"sample_id": sample_id, "split": split, "subject": subject, "frame": frame,
                "expression": expression, "valence": valence, "arousal": arousal, "aus": aus}  # fmt: skip

    tables: dict[str, list[dict]] = {}
    for source in ("rafdb", "affectnet"):
        tables[source] = [
            row(f"{source}/{split}_{i}", split, expression=int(rng.integers(0, 8)))
            for split, n in SIZES[source].items()
            for i in range(int(n * scale))
        ]
    d = SIZES["disfa"]
    tables["disfa"] = [
        row(f"disfa/SN{s:03d}/{f}", "train", f"SN{s:03d}", f, aus=pool[(s * 7 + f // 40) % len(pool)])
        for s in range(d["subjects"])
        for f in range(int(d["frames"] * scale))
    ]
    b = SIZES["bp4d"]
    tables["bp4d"] = [
        row(f"bp4d/F{s:03d}/T{t}/{f}", "train", f"F{s:03d}", f, aus=au12[(s * 13 + t * 5 + f // 30) % len(au12)])
        for s in range(b["subjects"])
        for t in range(1, b["tasks"] + 1)
        for f in range(int(b["frames"] * scale))
    ]
    a = SIZES["affwild2"]
    tables["affwild2"] = [
        row(
            f"affwild2/{split}{v}/{f + 1:05d}",
            split,
            f"{split}{v}",
            f,
            expression=int(rng.integers(0, 9)) if f % 3 else -1,
            valence=0.1 if f % 2 else None,
            arousal=0.2 if f % 2 else None,
            aus=au12[(v + f // 50) % len(au12)] if f % 5 == 0 else none,
        )
        for split in ("train", "validation")
        for v in range(a[split])
        for f in range(int(a["frames"] * scale))
    ]
    return tables


def bench_selection(scale: float) -> None:
    tables = metadata_tables(scale)
    n = sum(map(len, tables.values()))
    scan, _ = timed(lambda: [(annotated_levels(r), active_aus(r["aus"])) for rows in tables.values() for r in rows])
    select, manifest = timed(lambda: selection.select(tables, selection.SelectionParams()))
    print(f"selection on {n:,} metadata rows (scale {scale}): {select:.2f} s -> {len(manifest):,} manifest rows; "
          f"one plain pass {scan:.2f} s; ratio {select / scan:.1f}x")  # fmt: skip


def labelled_rows(n: int) -> datasets.Dataset:
    pictures = [face_bytes(seed, size=(48, 48)) for seed in range(32)]
    rows = {name: [] for name in FEATURES}
    for i in range(n):
        for name, value in seke_hf.schema.empty_row(
            f"bench/{i}", "bench", image={"bytes": pictures[i % 32], "path": None}
        ).items():
            rows[name].append(value)
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def bench_merge(n: int) -> None:
    ds = labelled_rows(n)
    annotations = export_annotations(ds).map(lambda r, i: {"valence": (i % 200) / 100 - 1, "status": "accepted"},
                                             with_indices=True).shuffle(seed=0).flatten_indices()  # fmt: skip
    ours, merged = timed(lambda: merge_annotations(ds, annotations))

    def naive():
        lookup = {row["sample_id"]: row for row in annotations}
        features = datasets.Features({**ds.features, "status": datasets.Value("string")})
        return ds.map(lambda r: {"valence": lookup[r["sample_id"]]["valence"], "status": "accepted"},
                      features=features, load_from_cache_file=False)  # fmt: skip

    base, reference = timed(naive)
    assert merged["valence"] == reference["valence"]
    print(f"merge_annotations on {n:,} rows: {ours:.2f} s; per-row Dataset.map merge {base:.2f} s; "
          f"speed-up {base / ours:.1f}x")  # fmt: skip


def bench_attach(faces: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_rafdb(root / "RAF-DB", n_train=faces, n_test=0, original=False)
        corpus = seke_hf.load_corpus("rafdb", root / "RAF-DB", split="train")
        released = export_annotations(corpus).shuffle(seed=0).flatten_indices()
        ours, restored = timed(lambda: attach_images(released, root))

        def naive():
            index = {sample_id: i for i, sample_id in enumerate(corpus["sample_id"])}
            raw = corpus.cast_column("image", datasets.Image(decode=False))
            features = datasets.Features({**released.features, "image": datasets.Image()})
            return released.map(lambda r: {"image": raw[index[r["sample_id"]]]["image"]}, features=features,
                                load_from_cache_file=False)  # fmt: skip

        base, reference = timed(naive)
        assert len(restored) == len(reference) == faces
        print(f"attach_images on {faces:,} faces: {ours:.2f} s (corpus cached); per-row Dataset.map fetch "
              f"{base:.2f} s; speed-up {base / ours:.1f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1, help="share of the paper-scale corpora (1 = full size)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--faces", type=int, default=2_000)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    bench_selection(args.scale)
    bench_merge(args.rows)
    bench_attach(args.faces)


if __name__ == "__main__":
    main()
