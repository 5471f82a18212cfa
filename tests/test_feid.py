"""FEID/FEAB: the selection protocol on metadata tables, then `load_dataset("feid"/"feab")` on generated corpora."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
from collections import Counter

import datasets
import pytest

import seke_hf
from seke_hf import feid, selection
from seke_hf.cli import build as build_cli
from seke_hf.release import attach_images
from seke_hf.schema import AUS, EXPRESSIONS, aus_from_active
from seke_hf.selection import FEAB_SPLIT, FEID_SPLIT, ManifestEntry, SelectionParams
from seke_hf.simulate import SimulatedVLLM, truth_from_dataset
from seke_hf.synthetic.corpora import write_corpora

# -- metadata tables ----------------------------------------------------------------------------------------------


def _row(sample_id, split="train", subject="", frame=None, expression=-1, valence=None, arousal=None, aus=None):
    return {
        "sample_id": sample_id,
        "split": split,
        "subject": subject,
        "frame": frame,
        "expression": expression,
        "valence": valence,
        "arousal": arousal,
        "aus": aus if aus is not None else dict.fromkeys(AUS, -1),
    }


def _au_video_table(source="disfa", subjects=8, frames=60):
    """Frames whose AU combination is common (AU12) except every 17th frame (rare, distinct combinations)."""
    rng = random.Random(7)
    rows = []
    for s in range(subjects):
        subject = f"SN{s:03d}"
        for f in range(frames):
            active = ["AU12"] if f % 17 else rng.sample(["AU1", "AU2", "AU4", "AU9", "AU20", "AU26"], 2)
            sample_id = f"{source}/{subject}/{f}" if source == "disfa" else f"{source}/{subject}/T1/{f}"
            rows.append(_row(sample_id, subject=subject, frame=f, aus=aus_from_active(active)))
    return rows


def _class_table(source="rafdb"):
    rows = []
    counts = {"happiness": 50, "neutral": 30, "fear": 3, "disgust": 8}
    for split, scale in (("train", 1), ("test", 1)):
        for name, count in counts.items():
            for i in range(count * scale):
                rows.append(_row(f"{source}/{split}_{name}_{i:03d}", split, expression=EXPRESSIONS.index(name)))
    return rows


def _affwild2_table():
    rows = []
    for split, videos in (("train", ["v1", "v2", "shared_left"]), ("validation", ["v3", "shared_right"])):
        for video in videos:
            for f in range(40):
                levels = 3 if f % 10 == 0 else 1
                rows.append(
                    _row(
                        f"affwild2/{video}/{f + 1:05d}",
                        split,
                        subject=video,
                        frame=f,
                        expression=4,
                        valence=0.5 if levels == 3 else None,
                        arousal=0.1 if levels == 3 else None,
                        aus=aus_from_active(["AU12"], coded=AUS[:12]) if levels == 3 else None,
                    )
                )
    return rows


def _params(**overrides):
    base = {
        "targets": {"disfa": [40, 10], "bp4d": [40, 10], "rafdb": [20, 12], "affwild2": [12, 6]},
        "min_frame_gap": {"disfa": 2, "bp4d": 2, "affwild2": 2},
    }
    return SelectionParams.from_dict({**base, **overrides})


def test_default_targets_add_up_to_the_paper_totals():
    params = SelectionParams()
    assert sum(params.target(s, FEID_SPLIT) for s in seke_hf.CORPORA) == selection.PAPER_TOTALS[FEID_SPLIT] == 26_238
    assert sum(params.target(s, FEAB_SPLIT) for s in seke_hf.CORPORA) == selection.PAPER_TOTALS[FEAB_SPLIT] == 3_035
    assert params.targets["ckplus"] == (293, 34)


def test_params_merge_per_source_and_reject_unknown_keys():
    params = SelectionParams.from_dict({"seed": 3, "targets": {"rafdb": [10, 5]}, "min_frame_gap": {"disfa": 4}})
    assert params.seed == 3 and params.targets["rafdb"] == (10, 5) and params.targets["affectnet"] == (8_000, 800)
    assert params.min_frame_gap == {**selection.DEFAULT_MIN_FRAME_GAP, "disfa": 4}
    assert SelectionParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError, match="unknown selection parameter 'sede'"):
        SelectionParams.from_dict({"sede": 1})


def test_manifest_is_deterministic_and_independent_of_row_order():
    tables = {"disfa": _au_video_table(), "rafdb": _class_table(), "affwild2": _affwild2_table()}
    first = selection.select(tables, _params())
    shuffled = {source: random.Random(1).sample(rows, len(rows)) for source, rows in tables.items()}
    assert selection.select(shuffled, _params()) == first
    assert selection.select(tables, _params(seed=1)) != first
    assert len({e.sample_id for e in first}) == len(first)


def test_au_corpora_are_subject_independent():
    for source in ("disfa", "bp4d"):
        rows = _au_video_table(source)
        manifest = selection.select({source: rows}, _params())
        subject = {r["sample_id"]: r["subject"] for r in rows}
        feid_subjects = {subject[e.sample_id] for e in manifest if e.split == FEID_SPLIT}
        feab_subjects = {subject[e.sample_id] for e in manifest if e.split == FEAB_SPLIT}
        assert feab_subjects and feid_subjects and not feab_subjects & feid_subjects
        assert len(feab_subjects) == round(8 * 0.2)
        assert Counter(e.split for e in manifest) == {FEID_SPLIT: 40, FEAB_SPLIT: 10}


def test_au_selection_takes_rare_combinations_first_and_spaces_frames():
    rows = _au_video_table(subjects=2, frames=120)
    rare = {tuple(sorted(k for k, v in r["aus"].items() if v == 1)) for r in rows} - {("AU12",)}
    picked = selection.cover_au_combinations(rows, target=len(rare), seed=0, min_gap=0)
    combos = {tuple(sorted(k for k, v in r["aus"].items() if v == 1)) for r in rows if r["sample_id"] in picked}
    assert combos == rare  # every rare combination before the common one

    picked = selection.cover_au_combinations(rows, target=1000, seed=0, min_gap=10)
    frames = {}
    for r in rows:
        if r["sample_id"] in picked:
            frames.setdefault(r["subject"], []).append(r["frame"])
    for taken in frames.values():
        taken.sort()
        assert all(b - a >= 10 for a, b in itertools.pairwise(taken))
    # A maximal spaced packing: never more than 12 frames per 120-frame video, never fewer than half of that.
    assert all(6 <= len(taken) <= 12 for taken in frames.values()) and sum(map(len, frames.values())) == len(picked)


def test_class_balanced_selection_water_fills_from_the_official_splits():
    rows = _class_table()
    picked = selection.select_class_balanced(rows, (20, 12), seed=0)
    by_id = {r["sample_id"]: r for r in rows}
    assert all(by_id[i]["split"] == "train" for i in picked[FEID_SPLIT])
    assert all(by_id[i]["split"] == "test" for i in picked[FEAB_SPLIT])
    counts = Counter(EXPRESSIONS[by_id[i]["expression"]] for i in picked[FEID_SPLIT])
    # fear gives all 3; the other 17 are shared 6/6/5, the remainder going to the lower class index first
    assert counts == {"fear": 3, "neutral": 6, "disgust": 6, "happiness": 5}
    assert selection.water_fill({"a": 1, "b": 100}, 10) == {"a": 1, "b": 9}
    assert selection.water_fill({"a": 2, "b": 2}, 10) == {"a": 2, "b": 2}


def test_affwild2_prefers_frames_with_more_levels_and_keeps_videos_apart():
    rows = _affwild2_table()
    picked = selection.select_multilevel_frames(rows, (8, 6), seed=0, min_gap=5)
    by_id = {r["sample_id"]: r for r in rows}
    assert all(by_id[i]["valence"] is not None for i in picked[FEID_SPLIT])  # 3-level frames exist for all 8
    assert all(by_id[i]["split"] == "train" for i in picked[FEID_SPLIT])
    assert all(by_id[i]["split"] == "validation" for i in picked[FEAB_SPLIT])
    assert not {by_id[i]["subject"] for i in picked[FEID_SPLIT]} & {"shared_left"}  # same scene as a FEAB video
    picked = selection.select_multilevel_frames(rows, (100, 0), seed=0, min_gap=5)
    levels = [by_id[i]["valence"] is not None for i in picked[FEID_SPLIT]]
    assert levels == sorted(levels, reverse=True)  # all multi-level frames come first


def test_ckplus_is_exactly_the_shipped_split_at_the_peak_frame():
    split = feid.ckplus_split()
    assert len(split) == 327 and Counter(split.values()) == {"train": 293, "test": 34}
    rows = [_row(f"ckplus/S022/005/S022_005_{f:08d}", frame=f, expression=1) for f in (1, 7, 12)] + [
        _row("ckplus/S005/001/S005_001_00000011", frame=10, expression=2),
        _row("ckplus/S998/001/S998_001_00000001"),
    ]
    picked = selection.select_ckplus(rows, split)
    assert picked == {
        FEID_SPLIT: ["ckplus/S005/001/S005_001_00000011"],
        FEAB_SPLIT: ["ckplus/S022/005/S022_005_00000012"],
    }


def test_manifest_file_round_trip_and_clear_errors(tmp_path):
    manifest = [
        ManifestEntry("rafdb/test_0001", FEAB_SPLIT, "rafdb"),
        ManifestEntry("rafdb/train_00001", FEID_SPLIT, "rafdb"),
    ]
    path = feid.write_manifest(manifest, tmp_path / "m.csv")
    assert path.read_text().splitlines()[0] == "sample_id,split,source"
    assert feid.read_manifest(path) == selection.sort_manifest(manifest)
    (tmp_path / "bad.csv").write_text("id,split\nx,train\n")
    with pytest.raises(ValueError, match="lacks columns"):
        feid.read_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("sample_id,split,source\nx,val,rafdb\n")
    with pytest.raises(ValueError, match="line 2: split 'val'"):
        feid.read_manifest(tmp_path / "bad2.csv")
    with pytest.raises(FileNotFoundError, match="header sample_id,split,source"):
        feid.read_manifest(tmp_path / "none.csv")


# -- load_dataset on generated corpora ------------------------------------------------------------------------------

SMALL = {"min_frame_gap": {"disfa": 3, "bp4d": 2, "affwild2": 2}}


def _ids(ds):
    return list(ds["sample_id"])


def test_feid_and_feab_load_through_load_dataset(corpora_root):
    train = datasets.load_dataset("feid", data_dir=str(corpora_root), split="train", selection=SMALL)
    test = datasets.load_dataset("feab", data_dir=str(corpora_root), split="test", selection=SMALL)
    assert train.features == seke_hf.FEATURES == test.features
    assert set(train["source"]) == set(test["source"]) == set(seke_hf.CORPORA)
    assert not set(_ids(train)) & set(_ids(test))
    for source in ("disfa", "bp4d", "ckplus"):  # subject-independent on the loaded data
        subjects = {split: {s for s, src in zip(d["subject"], d["source"], strict=True) if src == source}
                    for split, d in (("train", train), ("test", test))}  # fmt: skip
        assert subjects["train"] and subjects["test"] and not subjects["train"] & subjects["test"], source
    # The same manifest as the library computes, in the same order.
    splits, manifest, _ = feid.build(corpora_root, params=SelectionParams.from_dict(SMALL))
    assert _ids(train) == [e.sample_id for e in manifest if e.split == FEID_SPLIT] == _ids(splits[FEID_SPLIT])
    assert _ids(test) == [e.sample_id for e in manifest if e.split == FEAB_SPLIT]
    # Cached: the second call builds nothing and returns the same rows.
    again = datasets.load_dataset("feid", data_dir=str(corpora_root), split="train", selection=SMALL)
    assert again.cache_files == train.cache_files


def test_per_source_config_user_manifest_and_explicit_paths(corpora_root, tmp_path):
    rafdb = datasets.load_dataset("feid", "rafdb", data_dir=str(corpora_root), split="train", selection=SMALL)
    assert set(rafdb["source"]) == {"rafdb"} and len(rafdb) == 14
    manifest = [
        ManifestEntry("rafdb/train_00003", FEID_SPLIT, "rafdb"),
        ManifestEntry("rafdb/train_00001", FEID_SPLIT, "rafdb"),
        ManifestEntry("rafdb/test_0002", FEAB_SPLIT, "rafdb"),
    ]
    path = feid.write_manifest(manifest, tmp_path / "manifest.csv")
    mine = datasets.load_dataset("feid", data_dir=str(corpora_root), split="train", manifest=str(path))
    assert _ids(mine) == ["rafdb/train_00001", "rafdb/train_00003"]
    explicit = datasets.load_dataset(
        "feab", "rafdb", paths={"rafdb": str(corpora_root / "RAF-DB")}, split="test", manifest=str(path)
    )
    assert _ids(explicit) == ["rafdb/test_0002"]
    row = explicit.cast_column("image", datasets.Image(decode=False))[0]
    assert row["image"]["bytes"] == (corpora_root / "RAF-DB/basic/Image/aligned/test_0002_aligned.jpg").read_bytes()


def test_partial_root_builds_what_it_has_with_a_warning(tmp_path, caplog):
    root = tmp_path / "partial"
    write_corpora(root, corpora=("ckplus", "rafdb"))
    (root / "RAF-DB").rename(root / "raf_db")  # names are matched ignoring case, '-' and '_'
    with caplog.at_level(logging.WARNING, logger="seke_hf.corpus_roots"):
        train = datasets.load_dataset("feid", data_dir=str(root), split="train")
    assert set(train["source"]) == {"ckplus", "rafdb"}
    assert "2 of 6 corpora" in caplog.text and "AffectNet, DISFA, BP4D, Aff-Wild2" in caplog.text
    with pytest.raises(FileNotFoundError, match="no corpus folder"):
        datasets.load_dataset("feid", data_dir=str(tmp_path / "partial" / "CK+" / "Emotion"), split="train")


# -- seke-hf build ---------------------------------------------------------------------------------------------------


def _build_cli(argv):
    """`seke-hf build ...` through the subcommand's own parser (the same `run` the entry point calls)."""
    parser = argparse.ArgumentParser(prog="seke-hf")
    build_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["build", *argv])
    return args.func(args)


def test_build_cli_end_to_end_with_a_simulated_model(corpora_root, tmp_path, capsys):
    splits = feid.build(corpora_root, params=SelectionParams.from_dict(SMALL)).datasets
    truth = truth_from_dataset(datasets.concatenate_datasets(list(splits.values())))
    out = tmp_path / "build"
    with SimulatedVLLM(truth=truth) as server:
        common = ["--corpora-root", str(corpora_root), "--base-url", server.base_url, "--limit", "12",
                  "--max-samples", "6", "--selection", json.dumps(SMALL), "--prices", "gpt-4o"]  # fmt: skip
        assert _build_cli([*common, "--out", str(out)]) == 0
        requests = server.stats()["requests"]
        # The same build again, as an annotations-only release: every answer comes from the request cache.
        assert _build_cli([*common, "--out", str(tmp_path / "again"), "--release", "annotations"]) == 0
        assert server.stats()["requests"] == requests
    captured = capsys.readouterr()
    printed = captured.out
    # One line per stage with its counts, instead of the progress bars of `datasets`.
    for stage in ("labels read: ", "rows selected: FEID 12, FEAB 12", "images read: ", "rows annotated: 24",
                  "shards written: "):  # fmt: skip
        assert stage in captured.err, stage
    assert "Generating" not in captured.err and "Creating parquet" not in captured.err
    assert "FEID: 12 rows" in printed and "FEAB: 12 rows" in printed and "estimated cost $" in printed

    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "manifest_report.json").read_text())
    assert report["images_read"] >= 24 and set(report["labels"]) == set(seke_hf.CORPORA)
    assert summary["images"]["read"] == report["images_read"]
    assert summary["usage"]["requests"] > 0 and summary["usage"]["tokens"]["prompt"] > 0
    assert set(summary["datasets"]["feid"]["per_source"]) == set(seke_hf.CORPORA)  # --limit spreads over sources
    manifest = feid.read_manifest(out / "manifest.csv")
    feid_rows = datasets.load_from_disk(str(out / "arrow" / "feid"))["train"]
    feab_rows = datasets.load_from_disk(str(out / "arrow" / "feab"))["test"]
    assert sorted(feid_rows["sample_id"]) == sorted(e.sample_id for e in manifest if e.split == FEID_SPLIT)
    assert {"messages", "images", "provenance", "status"} <= set(feid_rows.column_names)
    assert {"image", "provenance", "status"} <= set(feab_rows.column_names) and "messages" not in feab_rows.column_names
    hub = datasets.load_dataset(str(out / "hub" / "feid"), "all", split="train")
    assert sorted(hub["sample_id"]) == sorted(feid_rows["sample_id"])
    assert hub.features["images"] == feid_rows.features["images"]
    published = datasets.load_dataset(str(tmp_path / "again" / "hub" / "feab"), "all", split="test")
    assert "image" not in published.column_names and sorted(published["sample_id"]) == sorted(feab_rows["sample_id"])
    # ... and a user with the corpora gets the full rows back from it (the same image bytes; saving embeds the
    # images and keeps only the file name as their `path`, so paths are not compared).
    restored = attach_images(published, corpora_root)
    by_id = {row["sample_id"]: row for row in restored.cast_column("image", datasets.Image(decode=False))}
    for row in feab_rows.cast_column("image", datasets.Image(decode=False)):
        again = by_id[row["sample_id"]]
        assert again["image"]["bytes"] == row["image"]["bytes"]
        assert {k: v for k, v in again.items() if k != "image"} == {k: row[k] for k in again if k != "image"}
