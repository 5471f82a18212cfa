"""AffectNet: both releases, both configs, every marker and pitfall of docs/corpora.md §3, on generated trees."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest

from seke_hf import EXPRESSIONS, load_corpus
from seke_hf.loading_scripts.affectnet import (
    FaceBoxMismatch,
    csv_columns,
    face_box,
    line_shards,
    parse_landmarks,
    read_line_range,
)
from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.synthetic.affectnet import LANDMARK_TEMPLATE, landmarks_in, write_affectnet
from seke_hf.synthetic.faces import draw_face, seed_of


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet_classic")
    return root, write_affectnet(root, "classic", seed=1)


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet_npy")
    return root, write_affectnet(root, "npy", seed=2)


def by_id(dataset_dict) -> dict[str, dict]:
    return {row["sample_id"]: {**row, "split": split} for split, ds in dataset_dict.items() for row in ds}


def expected(truth, skips=(), drop=(10,)) -> dict[str, dict]:
    return {sid: t for sid, t in truth.items() if (t["skip"] is None or t["skip"] in skips) and t["code"] not in drop}


def assert_labels(row, truth):
    assert row["split"] == truth["split"]
    assert row["source"] == "affectnet" and row["frame"] is None
    index = EXPRESSIONS.index(truth["expression"]) if truth["expression"] else -1
    assert row["expression"] == index, row["sample_id"]
    if truth["valence"] is None:
        assert row["valence"] is None and row["arousal"] is None
    else:
        assert row["valence"] == pytest.approx(truth["valence"], abs=1e-6)
        assert row["arousal"] == pytest.approx(truth["arousal"], abs=1e-6)
    assert set(row["aus"].values()) == {-1} and set(row["au_intensity"].values()) == {-1}


def test_cropped_is_default_and_cuts_out_the_face(classic, cache_dir, caplog):
    root, truth = classic
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        rows = by_id(load_corpus("affectnet", root, cache_dir=cache_dir))
    assert rows.keys() == expected(truth).keys()
    for sid, row in rows.items():
        assert_labels(row, truth[sid])
        assert row["image"].size == tuple(truth[sid]["face_size"])
    # Codes 8 (None) and 9 (Uncertain) stay, without an expression; 9's valence/arousal -2 is missing.
    kept = {truth[sid]["code"] for sid in rows}
    assert {8, 9} <= kept and 10 not in kept
    # The crop holds the drawn face, also for the row whose box is only right when x is read as the row.
    for sid in [sid for sid in rows if truth[sid]["pitfall"] == "row_column_box"] + list(rows)[:1]:
        rel = sid.removeprefix("affectnet/") + ".jpg"
        face = draw_face(seed_of("affectnet", 1, rel), expression=truth[sid]["expression"] or "neutral",
                         size=truth[sid]["face_size"])  # fmt: skip
        diff = np.abs(np.asarray(rows[sid]["image"].convert("RGB"), float) - np.asarray(face, float)).mean()
        assert diff < 12, (sid, diff)
    log = caplog.text
    for reason in ("2 degenerate face box", "1 missing image", "1 unreadable image", "1 face box disagrees"):
        assert reason in log
    assert "29a31ebf1567693f4644c8ba3476ca9a72ee07fe67a5860d98707a0a" in log  # the corrupt image is named


def test_full_passes_image_bytes_through(classic, cache_dir):
    root, truth = classic
    ds = datasets.load_dataset("affectnet", "full", data_dir=str(root), cache_dir=cache_dir)
    ds = ds.cast_column("image", datasets.Image(decode=False))
    rows = by_id(ds)
    assert rows.keys() == expected(truth, skips=("face box disagrees with the landmarks",)).keys()
    images = root / "Manually_Annotated" / "Manually_Annotated_Images"
    for sid, row in rows.items():
        assert_labels(row, truth[sid])
        assert row["image"]["bytes"] == (images / (sid.removeprefix("affectnet/") + ".jpg")).read_bytes()


@pytest.mark.parametrize("drop", [(), (8, 9, 10)])
def test_drop_codes(classic, cache_dir, drop):
    root, truth = classic
    rows = by_id(load_corpus("affectnet", root, "full", cache_dir=cache_dir, drop_codes=drop))
    assert rows.keys() == expected(truth, skips=("face box disagrees with the landmarks",), drop=drop).keys()
    for sid, row in rows.items():
        assert_labels(row, truth[sid])


def test_header_is_detected_not_assumed(classic):
    lists = classic[0] / "Manually_Annotated_file_lists"
    assert csv_columns(lists / "training.csv")[1] is True
    columns, has_header = csv_columns(lists / "validation.csv")
    assert has_header is False and columns["expression"] == 6


def test_line_shards_cover_each_line_once(tmp_path):
    path = tmp_path / "rows.csv"
    lines = ["header"] + [f"{i}," + "x" * (i % 37) for i in range(500)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    shards = line_shards(path, skip_first=True, shard_bytes=97)
    assert len(shards) > 10
    assert [line for shard in shards for line in read_line_range(*shard)] == lines[1:]


def test_face_box_is_checked_against_the_landmarks():
    points = landmarks_in((30, 50, 40, 60))
    assert face_box((30, 50, 40, 60), points, (200, 200)) == (30, 50, 70, 110)
    assert face_box((50, 30, 60, 40), points, (200, 200)) == (30, 50, 70, 110)  # x read as the row
    with pytest.raises(FaceBoxMismatch):
        face_box((120, 120, 40, 60), points, (200, 200))
    assert face_box((150, 180, 80, 80), None, (200, 200)) == (150, 180, 200, 200)  # no landmarks: clipped, trusted
    text = ";".join(f"{v:.1f}" for v in points.reshape(-1))
    np.testing.assert_allclose(parse_landmarks(text), points, atol=0.06)
    assert parse_landmarks("1;2;3") is None and LANDMARK_TEMPLATE.shape == (68, 2)


def test_npy_release(npy, cache_dir, caplog):
    root, truth = npy
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        ds = load_corpus("affectnet", root, cache_dir=cache_dir)
    rows = by_id(ds.cast_column("image", datasets.Image(decode=False)))
    assert rows.keys() == expected(truth).keys()
    assert any(t["valence"] is None for sid, t in truth.items() if sid in rows)
    for sid, row in rows.items():
        assert_labels(row, truth[sid])
        folder, stem = sid.split("/")[1:]
        assert row["image"]["bytes"] == (root / folder / "images" / f"{stem}.jpg").read_bytes()
    assert [sid for sid in rows if rows[sid]["split"] == "validation"][:3] == [
        "affectnet/val_set/0", "affectnet/val_set/1", "affectnet/val_set/2",
    ]  # fmt: skip
    assert "1 missing image" in caplog.text and "1 unreadable image" in caplog.text


def test_layout_errors_name_what_is_expected(tmp_path, npy, cache_dir):
    with pytest.raises(CorpusLayoutError, match="Manually_Annotated_file_lists"):
        load_corpus("affectnet", tmp_path)
    (tmp_path / "Manually_Annotated_file_lists").mkdir()
    with pytest.raises(CorpusLayoutError, match="Manually_Annotated_Images"):
        load_corpus("affectnet", tmp_path)
    both = npy[0]
    (both / "Manually_Annotated_file_lists").mkdir(exist_ok=True)
    try:
        with pytest.raises(CorpusLayoutError, match="release="):
            load_corpus("affectnet", both)
        rows = by_id(load_corpus("affectnet", both, release="npy", cache_dir=cache_dir))
        assert rows.keys() == expected(npy[1]).keys()
    finally:
        (both / "Manually_Annotated_file_lists").rmdir()
