"""`import seke_hf` makes `datasets.load_dataset("rafdb" | "ckplus", data_dir=...)` work, without a glob per call."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pytest
from loading_helpers import raw_rows

import seke_hf
from seke_hf.synthetic.ckplus import write_ckplus
from seke_hf.synthetic.rafdb import write_rafdb


class FilesystemCounter:
    """Counts directory entries listed and paths statted inside `root` while active, through the `os` functions
    that pathlib, fsspec and datasets call (os.scandir, os.listdir, os.stat, os.lstat)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = os.fspath(root.resolve())
        self.listed = 0
        self.statted = 0
        self._monkeypatch = monkeypatch

    def _inside(self, path) -> bool:
        if isinstance(path, int):
            return False
        return os.path.abspath(os.fsdecode(os.fspath(path))).startswith(self.root)

    def __enter__(self) -> FilesystemCounter:
        scandir, listdir, stat, lstat = os.scandir, os.listdir, os.stat, os.lstat
        counter = self

        class Listing(list):
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def close(self):
                pass

        def counting_scandir(path="."):
            with scandir(path) as it:
                entries = Listing(it)
            if counter._inside(path):
                counter.listed += len(entries)
            return entries

        def counting_listdir(path="."):
            names = listdir(path)
            if counter._inside(path):
                counter.listed += len(names)
            return names

        def counting(function):
            def wrapper(path, *args, **kwargs):
                if counter._inside(path):
                    counter.statted += 1
                return function(path, *args, **kwargs)

            return wrapper

        self._monkeypatch.setattr(os, "scandir", counting_scandir)
        self._monkeypatch.setattr(os, "listdir", counting_listdir)
        self._monkeypatch.setattr(os, "stat", counting(stat))
        self._monkeypatch.setattr(os, "lstat", counting(lstat))
        return self

    def __exit__(self, *exc) -> None:
        self._monkeypatch.undo()

    @property
    def touched(self) -> int:
        return self.listed + self.statted


def test_load_dataset_reaches_the_builders(tmp_path, cache_dir):
    truth = write_rafdb(tmp_path / "raf", n_train=4, n_test=2)
    ds = datasets.load_dataset("rafdb", data_dir=str(tmp_path / "raf"), cache_dir=cache_dir)
    assert isinstance(ds, datasets.DatasetDict) and {ds[s].num_rows for s in ds} == {4, 2}
    assert {**raw_rows(ds["train"]), **raw_rows(ds["test"])}.keys() == truth.keys()
    original = datasets.load_dataset("rafdb", "original", data_dir=str(tmp_path / "raf"), cache_dir=cache_dir)
    assert original["train"][0]["image"].size == (160, 200)

    written = write_ckplus(tmp_path / "ck", sequences=["S005_001", "S022_005"], unlabelled=1)
    frames = datasets.load_dataset("ckplus", "sequences", data_dir=str(tmp_path / "ck"), cache_dir=cache_dir)
    assert frames["train"].num_rows == sum(len(seq.frames) for seq in written.values())
    peak = datasets.load_dataset("ckplus", data_dir=str(tmp_path / "ck"), cache_dir=cache_dir)
    assert (peak["train"].num_rows, peak["test"].num_rows) == (1, 1)


def test_load_corpus(tmp_path, cache_dir):
    write_rafdb(tmp_path / "raf", n_train=3, n_test=2)
    both = seke_hf.load_corpus("rafdb", tmp_path / "raf", cache_dir=cache_dir)
    test = seke_hf.load_corpus("rafdb", tmp_path / "raf", split="test", cache_dir=cache_dir)
    assert isinstance(test, datasets.Dataset) and test["sample_id"] == both["test"]["sample_id"]
    assert test.features == seke_hf.FEATURES
    streamed = seke_hf.load_corpus("rafdb", tmp_path / "raf", streaming=True, cache_dir=cache_dir)
    assert isinstance(streamed, datasets.IterableDatasetDict)
    assert [row["sample_id"] for row in streamed["train"]] == both["train"]["sample_id"]
    with pytest.raises(ValueError, match="unknown corpus"):
        seke_hf.load_corpus("fer2013", tmp_path)


def cached_call_cost(
    name: str, root: Path, cache_dir: str, monkeypatch: pytest.MonkeyPatch, config: str | None = None
) -> int:
    datasets.load_dataset(name, config, data_dir=str(root), cache_dir=cache_dir)  # build (or reuse) the cache
    with FilesystemCounter(root, monkeypatch) as counter:
        datasets.load_dataset(name, config, data_dir=str(root), cache_dir=cache_dir)
    print(name, config, root.name, counter.listed, counter.statted)
    return counter.touched


def test_a_cached_call_does_not_walk_the_images(tmp_path, cache_dir, monkeypatch):
    small, large = tmp_path / "small", tmp_path / "large"
    write_rafdb(small, n_train=5, n_test=3, original=False)
    write_rafdb(large, n_train=60, n_test=30, original=False)
    with FilesystemCounter(large, monkeypatch) as build:
        datasets.load_dataset("rafdb", data_dir=str(large), cache_dir=cache_dir)
    assert build.touched >= 90  # the build reads every image: the counter sees the files

    cost_small = cached_call_cost("rafdb", small, cache_dir, monkeypatch)
    cost_large = cached_call_cost("rafdb", large, cache_dir, monkeypatch)
    assert cost_small == cost_large < 20  # independent of the number of images

    # The packaged-module path of datasets lists every image on every call, even when cached.
    base_small = cached_call_cost("imagefolder", small / "basic", cache_dir, monkeypatch)
    base_large = cached_call_cost("imagefolder", large / "basic", cache_dir, monkeypatch)
    assert base_large - base_small >= 80


def test_a_cached_ckplus_call_does_not_depend_on_frame_count(tmp_path, cache_dir, monkeypatch):
    sequences = ["S005_001", "S010_002", "S022_005"]
    short, long = tmp_path / "short", tmp_path / "long"
    write_ckplus(short, sequences=sequences, frames=2, size=(16, 12), landmarks=False)
    write_ckplus(long, sequences=sequences, frames=30, size=(16, 12), landmarks=False)
    for config in ("peak", "sequences"):
        cost_short = cached_call_cost("ckplus", short, cache_dir, monkeypatch, config)
        cost_long = cached_call_cost("ckplus", long, cache_dir, monkeypatch, config)
        assert cost_short == cost_long  # label files and sequence folders only, never the frames
