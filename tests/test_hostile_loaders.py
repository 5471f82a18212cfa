"""Hostile raw files (issue 17, items 8 and 9): label files in other encodings, label files nothing can be read from,
images too large to decode. A corpus must never be dropped silently, and one bad file must never abort a build."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from loading_helpers import huge_png, load, raw_rows, touch_later, warnings_of

from seke_hf.loading_scripts.raw_files import CorpusLayoutError, UnreadableImage, check_image_bytes
from seke_hf.synthetic.affectnet import write_affectnet
from seke_hf.synthetic.affwild2 import write_affwild2
from seke_hf.synthetic.ckplus import write_ckplus
from seke_hf.synthetic.disfa import write_disfa
from seke_hf.synthetic.rafdb import write_rafdb

ENCODINGS = {  # what editors and Windows tools save a text file as
    "utf-8-sig": lambda text: text.encode("utf-8-sig"),
    "utf-16-le": lambda text: b"\xff\xfe" + text.encode("utf-16-le"),
    "utf-16-be": lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
    "utf-32": lambda text: text.encode("utf-32"),  # little-endian with its BOM on this platform
    "utf-16-le without BOM": lambda text: text.encode("utf-16-le"),
}


def reencode(files: list[Path], encoding: str) -> None:
    for path in files:
        touch_later(path, ENCODINGS[encoding](path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_rafdb_label_file_in_another_encoding_gives_the_same_rows(tmp_path, cache_dir, encoding):
    write_rafdb(tmp_path / "RAF-DB", n_train=4, n_test=2)
    expected = raw_rows(load("rafdb", tmp_path / "RAF-DB", str(tmp_path / "utf8_cache"), split="train"))
    reencode([tmp_path / "RAF-DB" / "basic" / "EmoLabel" / "list_patition_label.txt"], encoding)
    assert raw_rows(load("rafdb", tmp_path / "RAF-DB", cache_dir, split="train")) == expected


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-32"])
def test_disfa_and_affwild2_label_files_in_utf16_are_read(tmp_path, cache_dir, encoding):
    """DISFA reads through the shared line reader, Aff-Wild2 streams its files: both detect the encoding."""
    write_disfa(tmp_path / "disfa", subjects=("SN001",), n_frames=6)
    write_affwild2(tmp_path / "affwild2")
    for name in ("disfa", "affwild2"):
        expected = raw_rows(load(name, tmp_path / name, str(tmp_path / f"{name}_utf8"), split="train"))
        assert expected
        reencode([p for p in (tmp_path / name).rglob("*.txt")], encoding)
        assert raw_rows(load(name, tmp_path / name, cache_dir, split="train")) == expected, name


def test_affectnet_csv_in_utf16_is_refused_naming_it_and_the_fix(tmp_path, cache_dir):
    """The AffectNet CSVs are read in byte ranges by parallel workers, as UTF-8: another encoding must be converted."""
    write_affectnet(tmp_path / "affectnet", "classic")
    training = next((tmp_path / "affectnet").rglob("training.csv"))
    reencode([training], "utf-16-le")
    with pytest.raises(CorpusLayoutError, match=r"training\.csv is encoded as utf-16.*iconv"):
        load("affectnet", tmp_path / "affectnet", cache_dir)


def test_rafdb_label_file_none_of_whose_lines_parse_is_an_error_naming_it(tmp_path, cache_dir):
    """Lines that name no image of any split: the loader must stop and name the file, not build an empty corpus."""
    write_rafdb(tmp_path / "RAF-DB", n_train=4, n_test=2)
    label_file = tmp_path / "RAF-DB" / "basic" / "EmoLabel" / "list_patition_label.txt"
    touch_later(label_file, "\n".join(f"{i};{i}" for i in range(6)) + "\n")
    with pytest.raises(CorpusLayoutError, match=r"none of the 6 lines of .*list_patition_label\.txt"):
        load("rafdb", tmp_path / "RAF-DB", cache_dir)


def test_one_disfa_label_file_none_of_whose_lines_parse_is_an_error_naming_it(tmp_path, cache_dir):
    write_disfa(tmp_path / "disfa", subjects=("SN001", "SN002"), n_frames=6)
    bad = next(p for p in sorted((tmp_path / "disfa").rglob("*.txt")) if "SN002" in p.name)
    touch_later(bad, "".join(f"frame {i}: {i % 3}\n" for i in range(6)))  # no line is '<frame>,<intensity>'
    with pytest.raises(Exception) as error:  # raised while datasets writes the split: it wraps it in its own error
        load("disfa", tmp_path / "disfa", cache_dir)
    cause = error.value if isinstance(error.value, CorpusLayoutError) else error.value.__cause__
    assert isinstance(cause, CorpusLayoutError) and re.search(rf"none of the 6 lines of .*{bad.name}", str(cause))


def test_some_bad_lines_in_a_label_file_are_still_skipped_and_counted(tmp_path, cache_dir, caplog):
    write_disfa(tmp_path / "disfa", subjects=("SN001",), n_frames=6)
    path = sorted((tmp_path / "disfa").rglob("*.txt"))[0]
    touch_later(path, path.read_text() + "garbage line\n")
    with caplog.at_level(logging.WARNING):
        assert len(raw_rows(load("disfa", tmp_path / "disfa", cache_dir, split="train"))) > 0
    assert any("unreadable label line" in w and "garbage line" in w for w in warnings_of(caplog))


# -- images too large to decode ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_png_bytes():
    return huge_png()


def test_oversized_image_is_refused_by_the_image_check_naming_it(huge_png_bytes):
    with pytest.raises(UnreadableImage, match=r"huge\.png.*20000x20000"):
        check_image_bytes(huge_png_bytes, "huge.png")


def test_oversized_image_is_skipped_and_counted_naming_it(tmp_path, cache_dir, caplog, huge_png_bytes):
    written = write_ckplus(tmp_path / "ck", sequences=("S005_001", "S010_002"), unlabelled=0)
    sequence = written["S005/001"]
    peak = next((tmp_path / "ck").rglob(f"{sequence.peak}.png"))
    peak.write_bytes(huge_png_bytes)
    with caplog.at_level(logging.WARNING):
        rows = raw_rows(load("ckplus", tmp_path / "ck", cache_dir, split="train"))
    assert rows and not any(sequence.peak in sid for sid in rows)
    warning = next(w for w in warnings_of(caplog) if "skipped" in w)
    assert "1 oversized image" in warning and peak.name in warning


def test_build_names_the_label_file_none_of_whose_lines_parse(tmp_path, capsys):
    """Raised while `datasets` writes a split, the error reaches the command line as itself, not as datasets'
    "An error occurred while generating the dataset"."""
    from seke_hf.cli import main
    from seke_hf.synthetic.corpora import write_corpora

    write_corpora(tmp_path / "ROOT", corpora=("disfa",))
    bad = sorted((tmp_path / "ROOT").rglob("SN001_au1.txt"))[0]
    touch_later(bad, "".join(f"frame {i}: 0\n" for i in range(4)))
    argv = ["build", "--corpora-root", str(tmp_path / "ROOT"), "--corpora", "disfa", "--no-annotate", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "none of the 4 lines of" in error and "SN001_au1.txt" in error, error
