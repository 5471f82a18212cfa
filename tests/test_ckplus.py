"""CK+ read from a format-faithful raw tree: peak rows with FACS, sequences, the FEID split, caching, bad input."""

from __future__ import annotations

import collections
import logging
import shutil

import pytest
from loading_helpers import NOT_AN_IMAGE, add_litter, cache_file, load, raw_rows, touch_later, warnings_of

from seke_hf.loading_scripts.ckplus import Ckplus, read_split_list
from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.registration import code_hash
from seke_hf.schema import AUS, EXPRESSIONS
from seke_hf.synthetic.ckplus import emotion_text, facs_text, write_ckplus

# CK+ README codes -> canonical names (docs/corpora.md §1.3), restated so a changed table in the builder fails a test.
README_CODES = {
    0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise",
}  # fmt: skip
SMALL = ("S022_005", "S055_004", "S005_001", "S010_002", "S011_004")  # two FEAB test, three FEID train sequences


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckplus_full")
    return root, write_ckplus(root, frames=2, size=(32, 24), landmarks=False)


@pytest.fixture
def small_tree(tmp_path):
    written = write_ckplus(tmp_path / "ck", sequences=SMALL, unlabelled=2)
    return tmp_path / "ck", written


def expected_aus(facs: dict[int, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The docs/corpora.md §1.3 reading of a FACS file, written out independently of the builder."""
    aus, intensity = dict.fromkeys(AUS, 0), dict.fromkeys(AUS, 0)
    for number, value in facs.items():
        if f"AU{number}" in AUS:
            aus[f"AU{number}"] = 1
            intensity[f"AU{number}"] = -1 if value == 0 else value
    return aus, intensity


def peak_id(seq) -> str:
    return f"ckplus/{seq.key}/{seq.peak}"


def test_peak_reproduces_the_feid_split(full_tree, cache_dir):
    root, written = full_tree
    ds = load("ckplus", root, cache_dir)
    assert {split: ds[split].num_rows for split in ds} == {"train": 293, "test": 34}
    listed = read_split_list()
    for split in ("train", "test"):
        ids = ds[split]["sample_id"]
        assert len(set(ids)) == len(ids)
        assert {sid.split("/")[1] + "/" + sid.split("/")[2] for sid in ids} == {
            key for key, (s, _) in listed.items() if s == split
        }
    test_classes = collections.Counter(EXPRESSIONS[e] for e in ds["test"]["expression"])
    assert test_classes == {
        "surprise": 9,
        "happiness": 7,
        "anger": 6,
        "disgust": 6,
        "fear": 3,
        "sadness": 2,
        "contempt": 1,
    }
    unlabelled = [seq for seq in written.values() if seq.expression is None]
    assert len(unlabelled) == 3 and not {peak_id(s) for s in unlabelled} & set(ds["train"]["sample_id"])


def test_peak_rows_are_exact(small_tree, cache_dir):
    root, written = small_tree
    ds = load("ckplus", root, cache_dir)
    rows = {**raw_rows(ds["train"]), **raw_rows(ds["test"])}
    labelled = [seq for seq in written.values() if seq.expression is not None]
    assert set(rows) == {peak_id(seq) for seq in labelled}
    assert set(raw_rows(ds["test"])) == {"ckplus/S022/005/S022_005_00000003", "ckplus/S055/004/S055_004_00000003"}
    for seq in labelled:
        row = rows[peak_id(seq)]
        image_file = root / "CK+" / "cohn-kanade-images" / seq.subject / seq.sequence / f"{seq.peak}.png"
        assert row["image"]["bytes"] == image_file.read_bytes()  # grey or colour, stored as shipped
        assert (row["source"], row["subject"], row["frame"]) == ("ckplus", seq.subject, 2)
        assert EXPRESSIONS[row["expression"]] == seq.expression
        assert (row["aus"], row["au_intensity"]) == expected_aus(seq.facs)
        assert row["valence"] is None and row["arousal"] is None
    assert rows["ckplus/S005/001/S005_001_00000003"]["subject"] == "S005"


def test_images_keep_their_mode(small_tree, cache_dir):
    root, written = small_tree
    ds = load("ckplus", root, cache_dir)
    modes = {row["sample_id"]: row["image"].mode for split in ds for row in ds[split]}
    for seq in written.values():
        if peak_id(seq) in modes:
            assert modes[peak_id(seq)] == ("RGB" if seq.colour else "L")
    assert set(modes.values()) == {"RGB", "L"}


def test_sequences_config_has_every_frame_labelled_at_the_peak_only(small_tree, cache_dir):
    root, written = small_tree
    ds = load("ckplus", root, cache_dir, config="sequences")
    assert list(ds) == ["train"]
    rows = raw_rows(ds["train"])
    assert list(rows) == sorted(f"ckplus/{seq.key}/{stem}" for seq in written.values() for stem in seq.frames)
    for seq in written.values():
        for index, stem in enumerate(seq.frames):
            row = rows[f"ckplus/{seq.key}/{stem}"]
            assert row["frame"] == index
            if stem == seq.peak:
                expression = -1 if seq.expression is None else EXPRESSIONS.index(seq.expression)
                assert row["expression"] == expression
                assert (row["aus"], row["au_intensity"]) == expected_aus(seq.facs)  # all 593 are FACS-coded
            else:
                assert row["expression"] == -1
                assert row["aus"] == dict.fromkeys(AUS, -1) and row["au_intensity"] == dict.fromkeys(AUS, -1)


def test_every_emotion_code_maps_as_the_readme_says(small_tree, cache_dir):
    root, written = small_tree
    emotion = root / "CK+" / "Emotion"
    labelled = [seq for seq in written.values() if seq.expression is not None]
    seq = labelled[0]
    for code, name in README_CODES.items():
        touch_later(emotion / seq.subject / seq.sequence / f"{seq.peak}_emotion.txt", emotion_text(code))
        rows = load("ckplus", root, cache_dir, config="sequences", split="train")
        assert EXPRESSIONS[rows[rows["sample_id"].index(peak_id(seq))]["expression"]] == name


def test_facs_intensity_zero_extra_aus_and_invalid_lines(small_tree, cache_dir, caplog):
    root, written = small_tree
    seq = written["S005/001"]
    facs = root / "CK+" / "FACS" / seq.subject / seq.sequence / f"{seq.peak}_facs.txt"
    touch_later(facs, facs_text({1: 0, 4: 3, 27: 2, 43: 0}) + "   1.7000000e+01   5.0000000e+00\r\n")
    row = raw_rows(load("ckplus", root, cache_dir, split="train"))[peak_id(seq)]
    assert {au: v for au, v in row["aus"].items() if v} == {"AU1": 1, "AU4": 1, "AU17": 1}
    assert row["aus"]["AU12"] == 0 and row["au_intensity"]["AU12"] == 0  # full FACS: not listed = absent
    assert (row["au_intensity"]["AU1"], row["au_intensity"]["AU4"], row["au_intensity"]["AU17"]) == (-1, 3, 5)

    # The README's own typo `1.20000000e+00` (for AU12) is not a FACS code: it must not become AU1, and since the
    # AU it meant is unknown, no unlisted AU may be called absent.
    touch_later(facs, facs_text({4: 3}) + "   1.20000000e+00   0.000000000e+00\n   9.0000000e+00   7.0000000e+00\n")
    with caplog.at_level(logging.WARNING):
        row = raw_rows(load("ckplus", root, cache_dir, split="train"))[peak_id(seq)]
    assert row["aus"] == dict.fromkeys(AUS, -1) | {"AU4": 1}
    assert row["au_intensity"] == dict.fromkeys(AUS, -1) | {"AU4": 3}
    assert EXPRESSIONS[row["expression"]] == seq.expression  # the emotion label is unaffected
    assert any(str(facs) in w and "invalid line" in w for w in warnings_of(caplog))


def test_bad_emotion_files_are_skipped_and_counted_never_guessed(small_tree, cache_dir, caplog):
    root, written = small_tree
    emotion = root / "CK+" / "Emotion"
    bad = {"S005/001": "   8.0000000e+00\n", "S010/002": "   2.5000000e+00\n", "S022/005": "anger\n"}
    for key, text in bad.items():
        touch_later(emotion / key / f"{written[key].peak}_emotion.txt", text)
    touch_later(
        emotion / "S055/004" / f"{written['S055/004'].peak}_emotion.txt", "\n  7.0000000e+00 \n\n"
    )  # blanks: fine
    with caplog.at_level(logging.WARNING):
        ds = load("ckplus", root, cache_dir)
    assert ds["train"]["sample_id"] == [peak_id(written["S011/004"])]
    assert ds["test"]["sample_id"] == [peak_id(written["S055/004"])]
    assert EXPRESSIONS[ds["test"][0]["expression"]] == "surprise"
    train_warning = next(w for w in warnings_of(caplog) if "ckplus/train: skipped 2 rows" in w)
    assert "2 emotion file not one code 0..7" in train_warning and "S005_001_00000003_emotion.txt" in train_warning
    assert any("ckplus/test: skipped 1 rows" in w and "S022_005_00000003_emotion.txt" in w for w in warnings_of(caplog))
    # In the sequences config the frames stay, without an expression.
    rows = raw_rows(load("ckplus", root, cache_dir, config="sequences", split="train"))
    assert rows[peak_id(written["S005/001"])]["expression"] == -1
    assert rows[peak_id(written["S005/001"])]["aus"] == expected_aus(written["S005/001"].facs)[0]


def test_split_list_gaps_are_warned_about(small_tree, cache_dir, caplog):
    root, _ = small_tree
    extra = write_ckplus(root, sequences=["S900_001"], unlabelled=0)["S900/001"]  # labelled, not in the FEID list
    with caplog.at_level(logging.WARNING):
        ds = load("ckplus", root, cache_dir)
    warnings = warnings_of(caplog)
    assert any("322 sequence(s) of the FEID split list are missing" in w for w in warnings)
    assert any(
        "1 emotion-labelled sequence(s) are not in the FEID split list" in w and "S900/001" in w for w in warnings
    )
    assert peak_id(extra) not in [*ds["train"]["sample_id"], *ds["test"]["sample_id"]]
    assert peak_id(extra) in load("ckplus", root, cache_dir, config="sequences", split="train")["sample_id"]


def test_label_folders_without_images_and_images_without_labels(small_tree, cache_dir, caplog):
    root, written = small_tree
    seq = written["S010/002"]
    shutil.rmtree(root / "CK+" / "cohn-kanade-images" / "S010" / "002")
    unlabelled = [s for s in written.values() if s.expression is None]
    assert (root / "CK+" / "Emotion" / unlabelled[0].key).is_dir()  # an empty Emotion folder, as in the real tree
    with caplog.at_level(logging.WARNING):
        ds = load("ckplus", root, cache_dir)
    assert peak_id(seq) not in ds["train"]["sample_id"] and ds["train"].num_rows == 2
    assert any(
        "1 emotion-labelled sequence(s) have no image sequence" in w and "S010/002" in w for w in warnings_of(caplog)
    )
    assert not {peak_id(s) for s in unlabelled} & set(ds["train"]["sample_id"])


def test_unreadable_image_is_skipped_with_its_name(small_tree, cache_dir, caplog):
    root, written = small_tree
    seq = written["S005/001"]
    frames = root / "CK+" / "cohn-kanade-images" / seq.subject / seq.sequence
    (frames / f"{seq.peak}.png").write_bytes(NOT_AN_IMAGE)
    (frames / f"{seq.frames[0]}.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        peak = load("ckplus", root, cache_dir, split="train")
        sequences = load("ckplus", root, cache_dir, config="sequences", split="train")
    assert peak_id(seq) not in peak["sample_id"] and peak.num_rows == 2
    assert f"ckplus/{seq.key}/{seq.frames[1]}" in sequences["sample_id"]
    assert f"ckplus/{seq.key}/{seq.frames[0]}" not in sequences["sample_id"]
    assert any("unreadable image" in w and f"{seq.peak}.png" in w for w in warnings_of(caplog))


def test_missing_labels_and_empty_folders_give_clear_errors(small_tree, tmp_path, cache_dir):
    root, _ = small_tree
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="found none of cohn-kanade-images") as error:
        load("ckplus", tmp_path / "empty", cache_dir)
    assert "Emotion/S005/001/S005_001_00000011_emotion.txt" in str(error.value)  # the layout is quoted
    shutil.rmtree(root / "CK+" / "Emotion")
    with pytest.raises(CorpusLayoutError, match=r"emotion labels .*Emotion are missing") as error:
        load("ckplus", root, cache_dir)
    assert "Expected layout" in str(error.value)
    assert load("ckplus", root, cache_dir, config="sequences", split="train").num_rows == 7 * 3  # no labels needed
    (root / "CK+" / "Emotion" / "S005" / "001").mkdir(parents=True)
    with pytest.raises(CorpusLayoutError, match=r"no \*_emotion\.txt files"):
        load("ckplus", root, cache_dir)
    images = root / "CK+" / "cohn-kanade-images"
    shutil.rmtree(images)
    images.mkdir()
    with pytest.raises(CorpusLayoutError, match="no image sequences"):
        load("ckplus", root, cache_dir, config="sequences")


def test_macos_litter_is_ignored(small_tree, tmp_path, cache_dir):
    root, _ = small_tree
    clean = {
        c: raw_rows(load("ckplus", root, str(tmp_path / "clean"), config=c, split="train"))
        for c in ("peak", "sequences")
    }
    add_litter(root / "CK+")
    assert (root / "CK+" / "__MACOSX" / "FACS").is_dir() and (root / "CK+" / "FACS" / "S005" / ".DS_Store").is_file()
    for config, rows in clean.items():
        assert list(raw_rows(load("ckplus", root, cache_dir, config=config, split="train"))) == list(rows)


def test_streaming_yields_the_same_rows(small_tree, cache_dir):
    root, _ = small_tree
    for config in ("peak", "sequences"):
        eager = load("ckplus", root, cache_dir, config=config)
        streamed = load("ckplus", root, cache_dir, config=config, streaming=True)
        assert list(streamed) == list(eager)
        for split in eager:
            assert list(raw_rows(streamed[split]).items()) == list(raw_rows(eager[split]).items())


def test_cache_is_reused_and_follows_labels_and_frames(small_tree, cache_dir):
    root, written = small_tree
    first = load("ckplus", root, cache_dir, config="sequences", split="train")
    arrow, built = cache_file(first), cache_file(first).stat().st_mtime_ns
    assert code_hash("ckplus") in arrow.parts  # a change to the builder code rebuilds
    fingerprint = Ckplus.raw_fingerprint(root)
    again = load("ckplus", root, cache_dir, config="sequences", split="train")
    assert cache_file(again) == arrow and arrow.stat().st_mtime_ns == built

    landmark = next((root / "CK+" / "Landmarks").rglob("*_landmarks.txt"))
    touch_later(landmark, "   1.0000000e+00   2.0000000e+00\n")  # not read: no rebuild
    assert Ckplus.raw_fingerprint(root) == fingerprint

    seq = written["S005/001"]
    new_code = 1 if seq.expression != "anger" else 7
    touch_later(root / "CK+" / "Emotion" / seq.key / f"{seq.peak}_emotion.txt", emotion_text(new_code))
    relabelled = load("ckplus", root, cache_dir, config="sequences", split="train")
    assert cache_file(relabelled) != arrow
    row = relabelled[relabelled["sample_id"].index(peak_id(seq))]
    assert EXPRESSIONS[row["expression"]] == README_CODES[new_code]

    frames = root / "CK+" / "cohn-kanade-images" / seq.key
    shutil.copy(frames / f"{seq.peak}.png", frames / f"{seq.subject}_{seq.sequence}_00000004.png")
    grown = load("ckplus", root, cache_dir, config="sequences", split="train")
    assert grown.num_rows == relabelled.num_rows + 1
    assert f"ckplus/{seq.key}/{seq.subject}_{seq.sequence}_00000004" in grown["sample_id"]
