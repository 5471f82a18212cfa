"""A FEID build that costs what it keeps: labels first, images of the selected rows only, the same output as a
whole-corpus conversion (today's path), and bad input named instead of silently shrinking the selection."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from seke_hf import CORPORA, cli, feid
from seke_hf.corpora import load_source
from seke_hf.corpus_roots import find_corpus_dirs
from seke_hf.feid import CorpusError
from seke_hf.loading_scripts import video_frames
from seke_hf.selection import FEAB_SPLIT, FEID_SPLIT, ManifestEntry, SelectionParams
from seke_hf.synthetic.corpora import write_corpora
from seke_hf.synthetic.disfa import write_video

SMALL = SelectionParams.from_dict({"min_frame_gap": {"disfa": 3, "bp4d": 2, "affwild2": 2}})


def _arrow_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.arrow"))


def _rows(ds):
    return ds.cast_column("image", datasets.Image(decode=False)).to_list()


def test_label_first_build_equals_a_whole_corpus_conversion(corpora_root, tmp_path):
    new_cache = tmp_path / "new"
    built = feid.build(corpora_root, params=SMALL, cache_dir=str(new_cache))
    # Only the label tables and the selected rows were written: no corpus was converted whole.
    assert all(name.startswith("seke_hf/") for name in _arrow_files(new_cache)), _arrow_files(new_cache)
    assert len([n for n in _arrow_files(new_cache) if n.startswith("seke_hf/selected/")]) == 1

    # Today's path: every corpus loaded whole (images included), selected on its rows, rows taken by id.
    dirs = find_corpus_dirs(corpora_root)
    whole = {source: load_source(source, dirs[source], cache_dir=str(tmp_path / "old")) for source in CORPORA}
    assert built.manifest == feid.build_manifest(whole, SMALL)
    by_id = {
        row["sample_id"]: row for corpus in whole.values() for split in corpus.values() for row in _rows(split)
    }
    for split in (FEID_SPLIT, FEAB_SPLIT):
        rows = _rows(built.datasets[split])
        assert [row["sample_id"] for row in rows] == [e.sample_id for e in built.manifest if e.split == split]
        assert rows == [by_id[row["sample_id"]] for row in rows]  # same labels, same image bytes
    assert {row["source"] for row in _rows(built.datasets[FEID_SPLIT])} == set(CORPORA)

    # The synthetic AffectNet holds a corrupt image (only reading it tells): the selection chose it, its image
    # failed, it is named, and the selection ran again without it (hence the same manifest). A face box that misses
    # its landmarks is known from the labels and never chosen.
    report = built.report
    assert report.selection_rounds == 2
    assert list(report.skipped) == ["unreadable image"]
    assert report.skipped["unreadable image"][0].startswith("affectnet/")
    assert report.images_read >= len(built.manifest)
    assert set(report.labels) == set(CORPORA) and report.labels["disfa"] > 0

    # The same build again reads no label file and no image: both come from the cache.
    again = feid.build(corpora_root, params=SMALL, cache_dir=str(new_cache))
    assert again.report.from_cache and set(again.report.labels_from_cache) == set(CORPORA)
    assert again.manifest == built.manifest
    assert _rows(again.datasets[FEAB_SPLIT]) == _rows(built.datasets[FEAB_SPLIT])


def test_limit_reads_images_of_the_kept_rows_only(corpora_root, tmp_path):
    built = feid.build(corpora_root, params=SMALL, limit=7, cache_dir=str(tmp_path))
    assert len(built.datasets[FEID_SPLIT]) == len(built.datasets[FEAB_SPLIT]) == 7
    assert built.report.images_read == 14  # the first kept rows of each source read fine: nothing else was read
    assert len({row["source"] for row in _rows(built.datasets[FEID_SPLIT])}) == 6  # spread over the corpora


def test_a_given_manifest_row_whose_image_fails_is_left_out_and_named(tmp_path):
    root = tmp_path / "root"
    write_corpora(root, corpora=("rafdb",))
    images = next((root / "RAF-DB").rglob("aligned"))
    ids = ["rafdb/train_00001", "rafdb/train_00002", "rafdb/test_0001"]
    manifest = [ManifestEntry(i, FEAB_SPLIT if "test" in i else FEID_SPLIT, "rafdb") for i in ids]
    (images / "train_00002_aligned.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    built = feid.build(root, manifest=manifest, cache_dir=str(tmp_path / "cache"))
    assert built.report.skipped == {"unreadable image": ["rafdb/train_00002"]}
    assert [row["sample_id"] for row in _rows(built.datasets[FEID_SPLIT])] == ["rafdb/train_00001"]
    assert [e.sample_id for e in built.manifest] == ["rafdb/train_00001", "rafdb/test_0001"]  # what was built


def test_a_corpus_that_yields_no_row_is_an_error_naming_its_folder(tmp_path, capsys):
    root = tmp_path / "root"
    write_corpora(root, corpora=("ckplus", "rafdb"))
    for image in [p for p in (root / "RAF-DB").rglob("*") if p.suffix.lower() in (".jpg", ".png")]:
        image.rename(image.with_name("renamed_" + image.name))  # labels that parse, but no face under their names
    with pytest.raises(CorpusError, match=r"rafdb: the folder .*RAF-DB yields no row"):
        feid.build(root, cache_dir=str(tmp_path / "cache"))
    # ... and `seke-hf build` says so and fails, instead of building FEID without RAF-DB.
    status = cli.main(["build", "--corpora-root", str(root), "--out", str(tmp_path / "out"), "--no-annotate"])
    assert status == 1
    assert "rafdb: the folder" in capsys.readouterr().err and not (tmp_path / "out" / "manifest.csv").exists()


# -- video frames without decoding everything ------------------------------------------------------------------


def _smooth_video(path, frames=240, **options):
    """A video with sparse keyframes (smooth motion), each frame's number in its first pixels."""
    x = np.arange(96)[None, :, None]
    pixels = []
    for i in range(frames):
        frame = np.broadcast_to(((x + 2 * i) % 256).astype(np.uint8), (64, 96, 3)).copy()
        frame[:8, :8] = (i * 7) % 256
        pixels.append(frame)
    write_video(path, pixels, (96, 64), **options)
    return path


def test_seeking_to_keyframes_yields_the_frames_sequential_decoding_does(tmp_path, monkeypatch):
    video = _smooth_video(tmp_path / "v.avi")
    wanted = [2, 9, 70, 71, 150, 239, 400]
    sought = {i: np.asarray(image) for i, image in video_frames.iter_frames(video, wanted)}
    monkeypatch.setattr(video_frames, "SEEK_AHEAD", 10**9)
    decoded = {i: np.asarray(image) for i, image in video_frames.iter_frames(video, wanted)}
    assert sorted(sought) == sorted(decoded) == wanted[:-1]  # frame 400 is past the end: not yielded
    assert all(np.array_equal(sought[i], decoded[i]) for i in sought)


def test_frame_count_from_the_header_or_by_counting_packets(tmp_path):
    assert video_frames.frame_count(_smooth_video(tmp_path / "v.avi", frames=37)) == 37
    mkv = tmp_path / "v.mkv"
    av = video_frames.require_av()
    with av.open(str(mkv), "w", format="matroska") as container:  # Matroska headers carry no frame count
        stream = container.add_stream("mpeg4", rate=20)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(23):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), "rgb24")))
        container.mux(stream.encode())
    with av.open(str(mkv)) as container:
        assert container.streams.video[0].frames == 0
    assert video_frames.frame_count(mkv) == 23


def test_a_video_header_that_overstates_its_frames_is_caught_when_decoding(corpora_root, tmp_path, monkeypatch):
    from seke_hf.loading_scripts import disfa

    # SN013's video lacks its last labelled frame (15); a header claiming more frames lets the label pass keep it.
    monkeypatch.setattr(disfa, "frame_count", lambda path: 10**6)
    manifest = [ManifestEntry(f"disfa/SN013/{frame}", FEID_SPLIT, "disfa") for frame in (3, 15)]
    built = feid.build(corpora_root, sources=("disfa",), manifest=manifest, cache_dir=str(tmp_path))
    assert built.report.skipped == {"labelled frame the video lacks": ["disfa/SN013/15"]}
    assert [e.sample_id for e in built.manifest] == ["disfa/SN013/3"]
