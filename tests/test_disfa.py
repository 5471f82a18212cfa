"""DISFA builder on generated raw trees: real AVIs decoded by PyAV, extracted-frame folders, folds and pitfalls."""

from __future__ import annotations

import logging
import sys

import datasets
import pytest

from seke_hf import load_corpus
from seke_hf.loading_scripts.disfa import DISFA_AUS, frame_numbering
from seke_hf.loading_scripts.folds import DISFA_PARTS, fold_subjects
from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.loading_scripts.video_frames import UnreadableVideo, iter_frames
from seke_hf.schema import AUS, au_name
from seke_hf.synthetic.disfa import (
    SHORT_LABELS,
    SHORT_VIDEO,
    disfa_frames,
    read_frame_number,
    write_disfa,
    write_video,
)

N_FRAMES = 30
NOT_DISFA = [au for au in AUS if au not in {au_name(n) for n in DISFA_AUS}]


@pytest.fixture(scope="module")
def disfa_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("disfa")
    return root, write_disfa(root, n_frames=N_FRAMES)


def occurrence(intensity: dict[str, int], threshold: int = 2) -> dict[str, int]:
    return {au: -1 if value == -1 else int(value >= threshold) for au, value in intensity.items()}


def assert_rows_match(split: datasets.Dataset, truth: dict[str, dict[str, int]], threshold: int = 2) -> None:
    for row in split:
        assert row["sample_id"] == f"disfa/{row['subject']}/{row['frame']}"
        assert row["au_intensity"] == truth[row["sample_id"]]
        assert row["aus"] == occurrence(truth[row["sample_id"]], threshold)
        # The pixels are those of decoded frame `frame` (label line frame+1): the writer stamped the number in.
        assert read_frame_number(row["image"]) == row["frame"]


def test_all_config_reads_every_labelled_frame_that_has_pixels(disfa_tree, cache_dir, caplog):
    root, truth = disfa_tree
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        ds = load_corpus("disfa", root, cache_dir=cache_dir)
    assert list(ds) == ["train"]
    train = ds["train"]
    assert sorted(train["sample_id"]) == sorted(truth)
    assert_rows_match(train, truth)
    subjects = train["subject"]
    assert set(subjects) == {"SN001", "SN003", "SN010", "SN013"}  # SN003's video names are in odd letter case
    assert subjects.count(SHORT_LABELS) == N_FRAMES - 1  # SN010 has one labelled frame less (and a longer video)
    assert subjects.count(SHORT_VIDEO) == N_FRAMES - 1  # its video lacks the last labelled frame: skipped...
    assert "1 labelled frame the video lacks" in caplog.text  # ...and counted
    assert all(row["source"] == "disfa" and row["expression"] == -1 and row["valence"] is None for row in train)
    assert all(row["aus"][au] == -1 and row["au_intensity"][au] == -1 for row in train for au in NOT_DISFA)
    # The threshold is exercised: intensity 1 rows exist and are "absent".
    assert any(v == 1 for t in truth.values() for v in t.values())


def test_fold_configs_are_subject_independent(disfa_tree, cache_dir):
    root, truth = disfa_tree
    ds = datasets.load_dataset("disfa", "fold3", data_dir=str(root), cache_dir=cache_dir)
    assert set(ds["test"]["subject"]) == {"SN001", "SN010"}  # fold3 tests on part 1
    assert set(ds["train"]["subject"]) == {"SN003", "SN013"}
    assert len(ds["train"]) + len(ds["test"]) == len(truth)
    assert_rows_match(ds["test"], truth)


def test_fold_lists_cover_every_subject_once():
    everyone = [s for part in DISFA_PARTS for s in part]
    assert len(everyone) == len(set(everyone)) == 27
    tests = [fold_subjects(DISFA_PARTS, fold, [*everyone, "SN033"], "DISFA")["test"] for fold in (1, 2, 3)]
    assert sorted(s for t in tests for s in t) == sorted(everyone)  # SN033 is in no fold list
    for fold, test in zip((1, 2, 3), tests, strict=True):
        train = fold_subjects(DISFA_PARTS, fold, everyone, "DISFA")["train"]
        assert not set(train) & set(test) and len(train) + len(test) == 27
    assert tests[0] == sorted(DISFA_PARTS[2]) and tests[2] == sorted(DISFA_PARTS[0])
    assert "SN033" in fold_subjects(DISFA_PARTS, None, [*everyone, "SN033"], "DISFA")["train"]


def test_frame_stride_and_threshold_options(disfa_tree, cache_dir):
    root, truth = disfa_tree
    ds = load_corpus("disfa", root, config="fold2", frame_stride=7, au_threshold=1, cache_dir=cache_dir)
    rows = [*ds["train"], *ds["test"]]
    assert {row["frame"] for row in rows} == {0, 7, 14, 21, 28}
    assert sorted(row["sample_id"] for row in rows) == sorted(s for s in truth if int(s.split("/")[-1]) % 7 == 0)
    assert_rows_match(ds["train"], truth, threshold=1)
    assert set(ds["test"]["subject"]) == {"SN013"}


def test_right_camera_has_its_own_pixels_and_the_same_labels(disfa_tree, cache_dir):
    root, truth = disfa_tree
    right = load_corpus("disfa", root, camera="right", frame_stride=10, split="train", cache_dir=cache_dir)
    left = load_corpus("disfa", root, frame_stride=10, split="train", cache_dir=cache_dir)
    assert right["sample_id"] == left["sample_id"]
    assert_rows_match(right, truth)
    right_images = right.cast_column("image", datasets.Image(decode=False))["image"]
    left_images = left.cast_column("image", datasets.Image(decode=False))["image"]
    assert all(r["bytes"] != lt["bytes"] for r, lt in zip(right_images, left_images, strict=True))


@pytest.mark.parametrize("naming", ["zero", "one"])
def test_extracted_frames_need_no_pyav(tmp_path, cache_dir, monkeypatch, naming, caplog):
    truth = write_disfa(tmp_path, subjects=("SN001", SHORT_VIDEO), n_frames=12, video=False, extracted=naming)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now fails, as without the [video] extra
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        train = load_corpus("disfa", tmp_path, split="train", cache_dir=cache_dir)
    assert sorted(train["sample_id"]) == sorted(truth)
    assert_rows_match(train, truth)
    assert "1 labelled frame without image" in caplog.text
    stored = train.cast_column("image", datasets.Image(decode=False))["image"]
    first = next(tmp_path.rglob("SN001/0.png" if naming == "zero" else "SN001/00001.jpg"))
    assert stored[0]["bytes"] == first.read_bytes()  # the file's own bytes, not re-encoded


def test_frames_dir_is_used_instead_of_videos_and_numbering_can_be_forced(tmp_path, cache_dir):
    truth = write_disfa(tmp_path, subjects=("SN001",), n_frames=8, extracted="zero", right_camera=False)
    train = load_corpus("disfa", tmp_path, frames_dir="img", split="train", cache_dir=cache_dir)
    assert_rows_match(train, truth)
    stored = train.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    assert stored.startswith(b"\x89PNG")  # the extracted PNG as shipped, not a frame decoded from video
    shifted = load_corpus(
        "disfa", tmp_path, frames_dir="img", frame_numbering="one", split="train", cache_dir=cache_dir
    )
    # Read as 1-based, label frame f takes image f: frame 0 shows image 1, and the last frame has no image.
    assert [read_frame_number(row["image"]) for row in shifted] == [row["frame"] + 1 for row in shifted]
    assert len(shifted) == len(truth) - 1


def test_missing_pyav_says_how_to_install_it(disfa_tree, cache_dir, monkeypatch):
    root, _ = disfa_tree
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r'pip install "seke-hf\[video\]"'):
        load_corpus("disfa", root, config="fold1", cache_dir=cache_dir)


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
def test_iter_frames_decodes_only_wanted_frames_in_order(tmp_path, codec):
    path = tmp_path / f"{codec}.avi"
    write_video(path, disfa_frames(1, [frozenset()] * 25, (64, 48)), size=(64, 48), codec=codec)
    got = [(index, read_frame_number(image)) for index, image in iter_frames(path, [7, 0, 3, 7, 24, 30])]
    assert got == [(0, 0), (3, 3), (7, 7), (24, 24)]  # 30 is past the end: not yielded


def test_corrupt_video_is_named(tmp_path):
    path = tmp_path / "LeftVideoSN001_comp.avi"
    path.write_bytes(b"RIFF\0\0\0\0AVI LIST" + bytes(200))
    with pytest.raises(UnreadableVideo, match=r"LeftVideoSN001_comp\.avi"):
        list(iter_frames(path, [0]))


def test_invalid_label_values_are_missing_never_values(tmp_path, cache_dir, caplog):
    truth = write_disfa(tmp_path, subjects=("SN001",), n_frames=8, right_camera=False)
    labels = tmp_path / "DISFA" / "ActionUnit_Labels" / "SN001"
    lines = (labels / "SN001_au1.txt").read_text().splitlines()
    lines[2], lines[3] = "3,x", "4,9"  # label frames 3 and 4 = decoded frames 2 and 3
    (labels / "SN001_au1.txt").write_text("\n".join([*lines, "garbage"]) + "\n")
    (labels / "SN001_au26.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="seke_hf.loading"):
        train = load_corpus("disfa", tmp_path, split="train", cache_dir=cache_dir)
    assert "unreadable label line" in caplog.text
    for row in train:
        expected = dict(truth[row["sample_id"]], AU26=-1)
        if row["frame"] in (2, 3):
            expected["AU1"] = -1
        assert row["au_intensity"] == expected
        assert row["aus"] == occurrence(expected)


def test_layout_errors_name_what_is_expected(tmp_path):
    with pytest.raises(CorpusLayoutError, match="ActionUnit_Labels"):
        load_corpus("disfa", tmp_path)
    write_disfa(tmp_path, subjects=("SN001",), n_frames=4, video=False)
    with pytest.raises(CorpusLayoutError, match=r"LeftVideoSN001_comp\.avi"):
        load_corpus("disfa", tmp_path, cache_dir=str(tmp_path / "cache"))


def test_frame_numbering_detection(tmp_path):
    def named(*names):
        return {int(n.split(".")[0]): tmp_path / n for n in names}

    assert frame_numbering(named("0.png", "1.png")) == "zero"  # ME-GraphAU, JAA-Net
    assert frame_numbering(named("00001.jpg", "00002.jpg")) == "one"  # FG-Net, LibreFace
    assert frame_numbering(named("1.png", "2.png")) == "zero"  # 0-based with frame 0 dropped
    assert frame_numbering(named("0.png"), "one") == "one"


def test_editing_a_label_file_rebuilds_the_cache(tmp_path, cache_dir):
    write_disfa(tmp_path, subjects=("SN001",), n_frames=4, right_camera=False)
    before = load_corpus("disfa", tmp_path, split="train", cache_dir=cache_dir)
    assert [row["au_intensity"]["AU12"] for row in before] != [5, 5, 5, 5]
    (tmp_path / "DISFA" / "ActionUnit_Labels" / "SN001" / "SN001_au12.txt").write_text("1,5\n2,5\n3,5\n4,5\n")
    after = load_corpus("disfa", tmp_path, split="train", cache_dir=cache_dir)
    assert after["sample_id"] == before["sample_id"]
    assert [row["au_intensity"]["AU12"] for row in after] == [5, 5, 5, 5]
    assert [row["aus"]["AU12"] for row in after] == [1, 1, 1, 1]
