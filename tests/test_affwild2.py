"""Aff-Wild2: the ABAW editions' layouts, per-frame merging of the three tasks, sentinels, split rules (§6)."""

from __future__ import annotations

import logging
import shutil

import datasets
import pytest

from seke_hf import AUS, EXPRESSIONS, load_corpus
from seke_hf.loading_scripts.affwild2 import header_tokens, label_parser, parse_aus, parse_va
from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.synthetic.affwild2 import ABAW_AUS, write_affwild2

SIZE = (32, 32)


@pytest.fixture(scope="module")
def abaw5(tmp_path_factory):
    root = tmp_path_factory.mktemp("affwild2_abaw5")
    return root, write_affwild2(root, "abaw5", seed=3, size=SIZE)


def by_split(dataset_dict) -> dict[str, dict[str, dict]]:
    return {split: {row["sample_id"]: row for row in ds} for split, ds in dataset_dict.items()}


def assert_frame(row, truth, tasks=("VA", "EXPR", "AU")):
    """`row` carries exactly the labels `truth` has from `tasks`."""
    video, stem = row["sample_id"].split("/")[1:]
    assert row["subject"] == video == truth["video"] and row["frame"] == int(stem) - 1 == truth["frame"]
    has = truth["task_splits"].keys() & set(tasks)
    if "VA" in has:
        assert (row["valence"], row["arousal"]) == pytest.approx((truth["valence"], truth["arousal"]), abs=1e-6)
    else:
        assert row["valence"] is None and row["arousal"] is None
    expression = EXPRESSIONS.index(truth["expression"]) if "EXPR" in has else -1
    assert row["expression"] == expression, row["sample_id"]
    aus = truth["aus"] if "AU" in has else {}
    assert row["aus"] == {au: aus.get(au, -1) for au in AUS}, row["sample_id"]
    assert set(row["au_intensity"].values()) == {-1}


@pytest.mark.parametrize(
    ("edition", "expr_folder"),
    [("abaw2", None), ("abaw3", None), ("abaw6", None), ("abaw6", "EXPR_Classification_Challenge")],
)
def test_every_edition_layout(tmp_path, cache_dir, caplog, edition, expr_folder):
    truth = write_affwild2(tmp_path, edition, seed=4, size=SIZE, expr_folder=expr_folder)
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        splits = by_split(load_corpus("affwild2", tmp_path, cache_dir=cache_dir))
    for split, rows in splits.items():
        assert rows.keys() == {sid for sid, t in truth.items() if t["skip"] is None and t["split"] == split}
        for sid, row in rows.items():
            assert_frame(row, truth[sid])
    seen = {row["expression"] for rows in splits.values() for row in rows.values()}
    assert (EXPRESSIONS.index("other") in seen) == (edition != "abaw2")  # 7- vs 8-class EXPR header
    assert "3 labelled frame without a crop image" in caplog.text


def test_merges_tasks_per_frame_and_keeps_people_apart(abaw5, cache_dir):
    root, truth = abaw5
    splits = by_split(datasets.load_dataset("affwild2", data_dir=str(root), cache_dir=cache_dir))
    rows = {sid: row for split in splits.values() for sid, row in split.items()}
    first = [row for sid, row in rows.items() if truth[sid]["video"] == "2-30-640x360"]
    assert any(len(truth[r["sample_id"]]["task_splits"]) == 3 for r in first)  # VA, EXPR and AU on one frame
    assert any(truth[r["sample_id"]]["task_splits"].keys() == {"EXPR", "AU"} for r in first)  # VA -5 there
    assert "affwild2/2-30-640x360/00006" not in truth and "affwild2/2-30-640x360/00006" not in rows
    assert "affwild2/2-30-640x360/00013" not in rows  # a crop beyond the annotated lines
    subjects = {row["subject"] for row in rows.values()}
    assert {"video73_left", "video73_right"} <= subjects
    # The video in EXPR's validation set and VA/AU's training sets is held out whole (default rule).
    assert all(t["split"] == "validation" for sid, t in truth.items() if t["video"] == "118-30-640x480")
    assert {sid for sid in splits["validation"] if "118-30-640x480" in sid} == {
        sid for sid, t in truth.items() if t["video"] == "118-30-640x480" and t["skip"] is None
    }
    assert not any("118-30-640x480" in sid for sid in splits["train"])


def test_per_task_split_rule(abaw5, cache_dir):
    root, truth = abaw5
    splits = by_split(load_corpus("affwild2", root, cache_dir=cache_dir, split_rule="per_task"))
    for split, rows in splits.items():
        want = {sid for sid, t in truth.items() if t["skip"] is None and split in t["task_splits"].values()}
        assert rows.keys() == want
        for sid, row in rows.items():
            assert_frame(row, truth[sid], tasks=[t for t, s in truth[sid]["task_splits"].items() if s == split])
    assert splits["train"].keys() & splits["validation"].keys()  # the 118 video's frames are in both


def test_frame_stride_and_num_proc(abaw5, cache_dir):
    root, truth = abaw5
    ds = load_corpus("affwild2", root, cache_dir=cache_dir, frame_stride=3, num_proc=2)
    splits = by_split(ds)
    for split, rows in splits.items():
        want = [sid for sid, t in truth.items() if t["skip"] is None and t["split"] == split and t["frame"] % 3 == 0]
        assert list(rows) == sorted(want)  # order kept across the two workers: video, then frame


def test_streaming_matches(abaw5, cache_dir):
    root, truth = abaw5
    stream = load_corpus("affwild2", root, split="validation", streaming=True, cache_dir=cache_dir)
    got = [row["sample_id"] for row in stream]
    assert got == sorted(sid for sid, t in truth.items() if t["skip"] is None and t["split"] == "validation")


def test_bad_files_are_counted_not_fatal(tmp_path, cache_dir, caplog):
    truth = write_affwild2(tmp_path, "abaw5", seed=5, size=SIZE)
    va = tmp_path / "5th_ABAW_Annotations" / "VA_Estimation_Challenge" / "Train_Set"
    (va / "video5.txt").write_text("Neutral,Anger\n0.1,0.2\n")  # a header that is not VA's
    text = (va / "video73_left.txt").read_text().splitlines()
    (va / "video73_left.txt").write_text("\n".join([*text[:2], "0.3", *text[3:]]) + "\n")  # 1 field on frame 2
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        rows = {r["sample_id"]: r for r in load_corpus("affwild2", tmp_path, split="train", cache_dir=cache_dir)}
    assert "VA file without a VA header line" in caplog.text and "1 malformed VA line" in caplog.text
    frame2 = rows["affwild2/video73_left/00002"]
    assert frame2["valence"] is None
    assert frame2["expression"] == EXPRESSIONS.index(truth["affwild2/video73_left/00002"]["expression"])


def test_several_annotation_sets_need_a_choice(tmp_path, cache_dir):
    write_affwild2(tmp_path, "abaw5", seed=6, size=SIZE)
    truth = write_affwild2(tmp_path, "abaw6", seed=6, size=SIZE)
    with pytest.raises(CorpusLayoutError, match="annotations="):
        load_corpus("affwild2", tmp_path, cache_dir=cache_dir)
    ds = load_corpus("affwild2", tmp_path, cache_dir=cache_dir, annotations="6th ABAW Annotations")
    assert sum(ds.num_rows.values()) == sum(t["skip"] is None for t in truth.values())
    shutil.rmtree(tmp_path / "5th_ABAW_Annotations")
    shutil.rmtree(tmp_path / "6th ABAW Annotations")
    with pytest.raises(CorpusLayoutError, match="VA_Set"):
        load_corpus("affwild2", tmp_path, cache_dir=cache_dir)


def test_line_parsers():
    assert header_tokens("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other, \n")[-1] == "Other"
    assert label_parser("VA", "valence,arousal \n") is parse_va and label_parser("VA", "0.1,0.2") is None
    expr = label_parser("EXPR", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other, ")
    assert expr("7") == EXPRESSIONS.index("other") and expr("-1") is None and expr("") is None
    assert label_parser("EXPR", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise")("4") == 4
    with pytest.raises(ValueError):
        label_parser("EXPR", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise")("7")
    assert parse_va("-5,-5") is None and parse_va("0.5,-5") is None and parse_va("0.5,-0.25") == (0.5, -0.25)
    aus = tuple(ABAW_AUS)
    assert parse_aus(",".join(["-1"] * 12), aus) is None and parse_aus(",".join(["1"] * 11 + ["-1"]), aus) is None
    assert parse_aus(",".join(["0"] * 11 + ["1"]), aus) == {**dict.fromkeys(aus, 0), "AU26": 1}
    abaw1 = label_parser("AU", "AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25")  # ABAW1's 8 AUs
    assert abaw1("1,0,0,0,1,0,1,0") == {"AU1": 1, "AU2": 0, "AU4": 0, "AU6": 0, "AU12": 1, "AU15": 0, "AU20": 1,
                                        "AU25": 0}  # fmt: skip
