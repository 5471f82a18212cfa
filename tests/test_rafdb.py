"""RAF-DB basic read from a format-faithful raw tree: rows, splits, mapping, streaming, caching and bad input."""

from __future__ import annotations

import logging
import shutil

import pytest
from loading_helpers import NOT_AN_IMAGE, add_litter, cache_file, load, raw_rows, touch_later, warnings_of

from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.schema import AUS, EXPRESSIONS
from seke_hf.synthetic.rafdb import write_rafdb

# The official README's table (docs/corpora.md §2.2), restated here so a changed table in the builder fails a test.
README_CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}


@pytest.fixture
def rafdb(tmp_path):
    truth = write_rafdb(tmp_path / "RAF-DB", n_train=9, n_test=5)
    return tmp_path / "RAF-DB", truth


def label_file(root):
    return root / "basic" / "EmoLabel" / "list_patition_label.txt"


def test_rows_are_exact(rafdb, cache_dir):
    root, truth = rafdb
    ds = load("rafdb", root, cache_dir)
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == 9 and ds["test"].num_rows == 5
    for split, rows in ((s, raw_rows(ds[s])) for s in ds):
        assert all(sid.startswith(f"rafdb/{split}_") for sid in rows)
        for sample_id, row in rows.items():
            stem = sample_id.removeprefix("rafdb/")
            image_file = root / "basic" / "Image" / "aligned" / f"{stem}_aligned.jpg"
            assert row["image"]["bytes"] == image_file.read_bytes()  # stored as shipped, not re-encoded
            assert row["image"]["path"] is None  # a relative path could resolve against the cwd and lose the bytes
            assert EXPRESSIONS[row["expression"]] == truth[sample_id]
            assert (row["source"], row["subject"], row["frame"]) == ("rafdb", "", None)
            assert row["valence"] is None and row["arousal"] is None
            assert row["aus"] == dict.fromkeys(AUS, -1) and row["au_intensity"] == dict.fromkeys(AUS, -1)
    assert {*raw_rows(ds["train"]), *raw_rows(ds["test"])} == set(truth)
    assert list(raw_rows(ds["test"]))[:2] == ["rafdb/test_0001", "rafdb/test_0002"]  # 4-digit test names


def test_original_config_reads_original_images(rafdb, cache_dir):
    root, truth = rafdb
    rows = raw_rows(load("rafdb", root, cache_dir, config="original", split="train"))
    assert len(rows) == 9
    row = rows["rafdb/train_00001"]
    assert row["image"]["bytes"] == (root / "basic" / "Image" / "original" / "train_00001.jpg").read_bytes()
    assert EXPRESSIONS[row["expression"]] == truth["rafdb/train_00001"]


def test_every_code_maps_as_the_readme_says(tmp_path, cache_dir):
    root = tmp_path / "raf"
    write_rafdb(root, n_train=7, n_test=1)
    lines = [f"train_{code:05d}.jpg {code}" for code in README_CODES] + ["test_0001.jpg 7"]
    touch_later(label_file(root), "\n".join(lines) + "\n")
    rows = raw_rows(load("rafdb", root, cache_dir, split="train"))
    assert {sid: EXPRESSIONS[r["expression"]] for sid, r in rows.items()} == {
        f"rafdb/train_{code:05d}": name for code, name in README_CODES.items()
    }


def test_streaming_yields_the_same_rows(rafdb, cache_dir):
    root, _ = rafdb
    eager = load("rafdb", root, cache_dir)
    streamed = load("rafdb", root, cache_dir, streaming=True)
    for split in ("train", "test"):
        assert list(raw_rows(streamed[split]).items()) == list(raw_rows(eager[split]).items())


def test_cache_is_reused_and_follows_the_raw_files(rafdb, cache_dir):
    root, _ = rafdb
    first = load("rafdb", root, cache_dir, split="train")
    arrow = cache_file(first)
    written = arrow.stat().st_mtime_ns
    again = load("rafdb", root, cache_dir, split="train")
    assert cache_file(again) == arrow and arrow.stat().st_mtime_ns == written  # not regenerated

    # A changed label rebuilds, and the new label is read.
    lines = label_file(root).read_text().splitlines()
    assert lines[0].startswith("train_00001.jpg ")
    lines[0] = "train_00001.jpg 1" if not lines[0].endswith(" 1") else "train_00001.jpg 2"
    touch_later(label_file(root), "\n".join(lines) + "\n")
    changed = load("rafdb", root, cache_dir, split="train")
    assert cache_file(changed) != arrow
    assert changed[0]["expression"] == EXPRESSIONS.index(README_CODES[int(lines[0].split()[1])])

    # A new image (and its label line) rebuilds too.
    aligned = root / "basic" / "Image" / "aligned"
    shutil.copy(aligned / "train_00001_aligned.jpg", aligned / "train_00010_aligned.jpg")
    touch_later(label_file(root), "\n".join([*lines, "train_00010.jpg 4"]) + "\n")
    grown = load("rafdb", root, cache_dir, split="train")
    assert grown.num_rows == 10 and grown[9]["sample_id"] == "rafdb/train_00010"


def test_cache_depends_on_the_builder_code(rafdb, cache_dir):
    from seke_hf.registration import code_hash

    root, _ = rafdb
    ds = load("rafdb", root, cache_dir, split="test")
    assert code_hash("rafdb") in cache_file(ds).parts
    assert code_hash("rafdb") != code_hash("ckplus")


def test_missing_label_file_names_it_and_the_layout(rafdb, cache_dir):
    root, _ = rafdb
    label_file(root).unlink()
    with pytest.raises(CorpusLayoutError, match=r"EmoLabel/list_patition_label\.txt") as error:
        load("rafdb", root, cache_dir)
    assert "Image/aligned/train_00001_aligned.jpg" in str(error.value)  # the expected layout is quoted


def test_empty_folders_give_a_clear_error(tmp_path, rafdb, cache_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="found none of"):
        load("rafdb", tmp_path / "empty", cache_dir)
    root, _ = rafdb
    aligned = root / "basic" / "Image" / "aligned"
    for image in aligned.iterdir():
        image.unlink()
    with pytest.raises(CorpusLayoutError, match="Image/aligned holds no images"):
        load("rafdb", root, cache_dir)
    touch_later(label_file(root), "")
    with pytest.raises(CorpusLayoutError, match=r"list_patition_label\.txt is empty"):
        load("rafdb", root, cache_dir)


def test_bad_label_lines_are_skipped_and_counted_never_guessed(rafdb, cache_dir, caplog):
    root, truth = rafdb
    lines = label_file(root).read_text().splitlines()
    lines[0] = "train_00001.jpg 8"  # outside 1..7
    lines[1] = "train_00002.jpg 0"
    lines[2] = "train_00003.jpg happy"
    lines[3] = "train_00004.jpg"
    touch_later(label_file(root), "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        rows = raw_rows(load("rafdb", root, cache_dir, split="train"))
    assert set(rows) == {f"rafdb/train_{i:05d}" for i in range(5, 10)}
    assert all(EXPRESSIONS[r["expression"]] == truth[sid] for sid, r in rows.items())
    assert any("skipped 4 rows" in w and "train_00001.jpg 8" in w for w in warnings_of(caplog))


def test_unreadable_and_missing_images_are_skipped_with_their_names(rafdb, cache_dir, caplog):
    root, _ = rafdb
    aligned = root / "basic" / "Image" / "aligned"
    (aligned / "train_00002_aligned.jpg").write_bytes(NOT_AN_IMAGE)
    (aligned / "train_00003_aligned.jpg").write_bytes(b"")
    (aligned / "train_00004_aligned.jpg").unlink()
    truncated = aligned / "train_00005_aligned.jpg"  # an interrupted download: intact header, no end of image
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        rows = raw_rows(load("rafdb", root, cache_dir, split="train"))
    assert not {"rafdb/train_00002", "rafdb/train_00003", "rafdb/train_00004", "rafdb/train_00005"} & set(rows)
    assert len(rows) == 5
    warning = next(w for w in warnings_of(caplog) if "skipped" in w)
    assert "3 unreadable image" in warning and "train_00002_aligned.jpg" in warning
    assert "1 missing image" in warning and "train_00004_aligned.jpg" in warning


def test_macos_litter_is_ignored(rafdb, tmp_path, cache_dir):
    root, _ = rafdb
    clean = raw_rows(load("rafdb", root, str(tmp_path / "clean_cache"), split="train"))
    add_litter(root)
    littered = raw_rows(load("rafdb", root, cache_dir, split="train"))
    assert list(littered) == list(clean)
