"""BP4D builder on generated raw trees in both known layouts: unknown codes, padding, folds and missing images."""

from __future__ import annotations

import logging
import shutil

import datasets
import pytest

from seke_hf import load_corpus
from seke_hf.loading_scripts.bp4d import INTENSITY_AUS, read_occurrence
from seke_hf.loading_scripts.corpus_builder import Skips
from seke_hf.loading_scripts.folds import BP4D_PARTS, fold_subjects
from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.schema import AUS, au_name
from seke_hf.synthetic.bp4d import write_bp4d

NO_INTENSITY = [au for au in AUS if au not in {au_name(n) for n in INTENSITY_AUS}]


def assert_rows_match(split: datasets.Dataset, truth: dict) -> None:
    for row in split:
        subject, _task, frame = row["sample_id"].removeprefix("bp4d/").split("/")
        assert (row["subject"], row["frame"], row["source"]) == (subject, int(frame), "bp4d")
        assert row["aus"] == truth[row["sample_id"]]["aus"]
        assert row["au_intensity"] == truth[row["sample_id"]]["au_intensity"]


@pytest.mark.parametrize("layout", ["original", "fera"])
def test_all_config_reads_every_labelled_frame_with_an_image(tmp_path, cache_dir, caplog, layout):
    truth = write_bp4d(tmp_path, layout=layout)
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        ds = load_corpus("bp4d", tmp_path, cache_dir=cache_dir)
    train = ds["train"]
    assert sorted(train["sample_id"]) == sorted(truth)
    assert_rows_match(train, truth)
    assert "1 label row without image (e.g. F003/T1/122)" in caplog.text
    ids = set(train["sample_id"])
    # Absolute frame numbers, images matched by value whatever their padding (2440.jpg, 095.jpg, 0120.jpg).
    assert {"bp4d/F001/T1/2440", "bp4d/F001/T2/95", "bp4d/F003/T1/120"} <= ids
    assert "bp4d/F001/T1/2439" not in ids  # an image outside the coded segment is not a row
    # Columns that are 9 throughout, unknown cells and AUs without intensity codes are -1, never 0.
    assert all(row["aus"]["AU25"] == row["aus"]["AU26"] == -1 for row in train)
    assert any(row["aus"]["AU1"] == -1 for row in train) and any(row["aus"]["AU1"] == 0 for row in train)
    assert all(row["au_intensity"][au] == -1 for row in train for au in NO_INTENSITY)
    last = train.filter(lambda row: row["sample_id"].startswith("bp4d/F007/T2/"))
    assert len(last) and all(v == -1 for row in last for v in row["au_intensity"].values())  # no intensity file
    assert any(row["au_intensity"]["AU12"] > 0 for row in train)


def test_folds_and_frame_stride(tmp_path, cache_dir):
    truth = write_bp4d(tmp_path)
    ds = datasets.load_dataset("bp4d", "fold2", data_dir=str(tmp_path), frame_stride=4, cache_dir=cache_dir)
    assert set(ds["test"]["subject"]) == {"F003"}  # fold2 tests on part 2
    assert set(ds["train"]["subject"]) == {"F001", "F007"}
    rows = [*ds["train"], *ds["test"]]
    assert rows and all(row["frame"] % 4 == 0 for row in rows)
    assert sorted(row["sample_id"] for row in rows) == sorted(s for s in truth if int(s.rsplit("/", 1)[1]) % 4 == 0)
    assert_rows_match(ds["test"], truth)


def test_fold_lists_cover_every_subject_once():
    everyone = [s for part in BP4D_PARTS for s in part]
    assert len(everyone) == len(set(everyone)) == 41
    tests = [fold_subjects(BP4D_PARTS, fold, everyone, "BP4D")["test"] for fold in (1, 2, 3)]
    assert sorted(s for t in tests for s in t) == sorted(everyone)
    assert tests[0] == sorted(BP4D_PARTS[2]) and tests[2] == sorted(BP4D_PARTS[0])


def test_images_elsewhere_unreadable_and_missing(tmp_path, cache_dir, caplog):
    truth = write_bp4d(tmp_path / "copy", subjects=("F001",), tasks=("T1",))
    images = tmp_path / "frames_elsewhere"
    shutil.move(tmp_path / "copy" / "BP4D" / "Sequences(2D+3D)", images)
    with pytest.raises(CorpusLayoutError, match="no image folder"):
        load_corpus("bp4d", tmp_path / "copy", cache_dir=cache_dir)
    (images / "F001" / "T1" / "2441.jpg").write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        train = load_corpus("bp4d", tmp_path / "copy", images_dir=str(images), split="train", cache_dir=cache_dir)
    assert sorted(train["sample_id"]) == sorted(set(truth) - {"bp4d/F001/T1/2441"})
    assert "1 unreadable image" in caplog.text
    assert_rows_match(train, truth)


def test_missing_occurrence_files_are_a_clear_error(tmp_path):
    (tmp_path / "AUCoding").mkdir()
    with pytest.raises(CorpusLayoutError, match=r"F001_T1\.csv"):
        load_corpus("bp4d", tmp_path, cache_dir=str(tmp_path / "cache"))


def test_occurrence_columns_follow_the_header(tmp_path):
    skips = Skips("bp4d", "train")
    headerless = tmp_path / "F001_T1.csv"
    headerless.write_text("2440,1,0,9\n2441,0,1,1\nbad,row\n")
    named = tmp_path / "F001_T2.csv"
    named.write_text("Frame,AU12,AU1\n10,1,9\n")
    assert list(read_occurrence(headerless, skips)) == [
        (2440, {"AU1": 1, "AU2": 0}),  # column 3 is AU3, not in the 17
        (2441, {"AU1": 0, "AU2": 1}),
    ]
    assert list(read_occurrence(named, skips)) == [(10, {"AU12": 1, "AU1": -1})]
    assert skips.counts["unreadable label row"] == 1


def test_editing_a_label_file_rebuilds_the_cache(tmp_path, cache_dir):
    write_bp4d(tmp_path, subjects=("F001",), tasks=("T1",))
    before = load_corpus("bp4d", tmp_path, split="train", cache_dir=cache_dir)[0]
    csv = tmp_path / "BP4D" / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    header, first, *rest = csv.read_text().splitlines()
    fields = first.split(",")
    fields[2] = "1" if fields[2] == "0" else "0"  # AU2 of frame 2440
    csv.write_text("\n".join([header, ",".join(fields), *rest]) + "\n")
    after = load_corpus("bp4d", tmp_path, split="train", cache_dir=cache_dir)[0]
    assert after["sample_id"] == before["sample_id"] == "bp4d/F001/T1/2440"
    assert after["aus"]["AU2"] == int(fields[2]) != before["aus"]["AU2"]
