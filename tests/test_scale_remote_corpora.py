"""A corpus on object storage loads like its local copy: `load_dataset("rafdb", data_dir="s3://...")` against moto's
S3 server on 127.0.0.1 (the `s3` fixture), read through s3fs object by object."""

from __future__ import annotations

import datasets
import pytest
import s3fs
from s3_server import FAKE_SECRET

import seke_hf  # noqa: F401  (routes the corpus names in load_dataset)
from seke_hf import cli
from seke_hf.loading_scripts.raw_files import CorpusLayoutError
from seke_hf.release import attach_images, export_annotations
from seke_hf.synthetic.corpora import write_corpora
from seke_hf.synthetic.rafdb import write_rafdb


@pytest.fixture
def object_reads(monkeypatch):
    """Keys of the objects whose bytes s3fs fetched (a pass-through spy on its two read paths)."""
    keys: list[str] = []
    cat_file, open_file = s3fs.S3FileSystem._cat_file, s3fs.S3FileSystem._open

    async def counting_cat_file(self, path, *args, **kwargs):
        keys.append(path)
        return await cat_file(self, path, *args, **kwargs)

    def counting_open(self, path, *args, **kwargs):
        keys.append(path)
        return open_file(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", counting_cat_file)
    monkeypatch.setattr(s3fs.S3FileSystem, "_open", counting_open)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached instance bound its sync methods to the unspied ones
    yield keys
    s3fs.S3FileSystem.clear_instance_cache()


def rows(dataset: datasets.DatasetDict) -> dict[str, list[dict]]:
    """Every column of every row (images as their bytes), in sample_id order."""
    return {
        split: sorted(ds.cast_column("image", datasets.Image(decode=False)).to_list(), key=lambda r: r["sample_id"])
        for split, ds in dataset.items()
    }


def upload(s3, local_root, prefix: str) -> str:
    bucket = s3.bucket()
    s3.filesystem().put(f"{local_root}/", f"{bucket}/{prefix}", recursive=True)
    return f"s3://{bucket}/{prefix}"


def test_a_corpus_on_s3_loads_the_rows_of_its_local_copy_and_reloads_from_the_cache(s3, tmp_path, object_reads):
    write_rafdb(tmp_path / "RAF-DB", seed=3)
    url = upload(s3, tmp_path / "RAF-DB", "RAF-DB")

    local = datasets.load_dataset("rafdb", data_dir=str(tmp_path / "RAF-DB"), cache_dir=str(tmp_path / "local"))
    remote = datasets.load_dataset("rafdb", data_dir=url, cache_dir=str(tmp_path / "remote"))
    assert rows(remote) == rows(local)
    assert sum(len(ds) for ds in remote.values()) == 21
    assert sum("/Image/aligned/" in key for key in object_reads) == 21  # each image read once, one object at a time

    object_reads.clear()
    again = datasets.load_dataset("rafdb", data_dir=url, cache_dir=str(tmp_path / "remote"))
    assert rows(again) == rows(local)
    assert object_reads == []  # served from the datasets cache: the fingerprint came from listings alone


def test_a_changed_object_rebuilds_the_cache(s3, tmp_path):
    write_rafdb(tmp_path / "RAF-DB", seed=3)
    url = upload(s3, tmp_path / "RAF-DB", "RAF-DB")
    first = datasets.load_dataset("rafdb", data_dir=url, cache_dir=str(tmp_path / "cache"))
    label_key = f"{url.removeprefix('s3://')}/basic/EmoLabel/list_patition_label.txt"
    lines = s3.filesystem().cat_file(label_key).decode().splitlines()
    s3.filesystem().pipe_file(label_key, ("\n".join(lines[:-1]) + "\n").encode())  # drop the last test image's line

    second = datasets.load_dataset("rafdb", data_dir=url, cache_dir=str(tmp_path / "cache"))
    assert len(second["test"]) == len(first["test"]) - 1


def test_a_missing_label_file_on_s3_is_named_without_credentials(s3, tmp_path):
    write_rafdb(tmp_path / "RAF-DB", seed=3)
    (tmp_path / "RAF-DB" / "basic" / "EmoLabel" / "list_patition_label.txt").unlink()
    url = upload(s3, tmp_path / "RAF-DB", "RAF-DB")

    with pytest.raises(CorpusLayoutError, match=r"EmoLabel/list_patition_label\.txt") as error:
        datasets.load_dataset("rafdb", data_dir=url, cache_dir=str(tmp_path / "cache"))
    assert url in str(error.value) and FAKE_SECRET not in str(error.value)


@pytest.mark.parametrize("source", ["ckplus", "affectnet", "bp4d", "affwild2", "disfa"])
def test_the_other_corpora_load_from_s3_as_from_disk(s3, tmp_path, source):
    write_corpora(tmp_path / "ROOT", corpora=[source], seed=1)
    url = upload(s3, tmp_path / "ROOT", "ROOT")

    local = datasets.load_dataset(source, data_dir=str(tmp_path / "ROOT"), cache_dir=str(tmp_path / "local"))
    remote = datasets.load_dataset(source, data_dir=url, cache_dir=str(tmp_path / "remote"))
    assert rows(remote) == rows(local)
    assert sum(len(ds) for ds in remote.values()) > 0


def test_seke_hf_build_reads_corpora_from_s3_and_writes_its_tree_to_s3(s3, tmp_path, capsys):
    write_corpora(tmp_path / "ROOT", corpora=["rafdb", "affectnet"], seed=2)
    root_url = upload(s3, tmp_path / "ROOT", "faces")
    out_url = f"{root_url.rsplit('/', 1)[0]}/feid-build"
    argv = ["build", "--corpora", "rafdb,affectnet", "--no-annotate", "--no-progress"]

    assert cli.main([*argv, "--corpora-root", str(tmp_path / "ROOT"), "--out", str(tmp_path / "local")]) == 0
    assert cli.main([*argv, "--corpora-root", root_url, "--out", out_url]) == 0
    assert f"written to {out_url}" in capsys.readouterr().out

    fs = s3.filesystem()
    key = out_url.removeprefix("s3://")
    assert fs.cat_file(f"{key}/manifest.csv") == (tmp_path / "local" / "manifest.csv").read_bytes()
    for kind in ("feid", "feab"):
        remote = datasets.load_from_disk(f"{out_url}/arrow/{kind}")
        local = datasets.load_from_disk(str(tmp_path / "local" / "arrow" / kind))
        assert remote.keys() == local.keys()
        for split in local:
            assert remote[split].to_list() == local[split].to_list()
    written = [path for path in fs.find(key) if path.endswith((".json", ".csv", ".md", ".yaml"))]
    assert written and not any(FAKE_SECRET.encode() in fs.cat_file(path) for path in written)


def test_attach_images_restores_a_release_from_corpora_on_s3(s3, tmp_path):
    write_corpora(tmp_path / "ROOT", corpora=["rafdb"], seed=4)
    root_url = upload(s3, tmp_path / "ROOT", "faces")
    faces = datasets.load_dataset("rafdb", data_dir=str(tmp_path / "ROOT"), split="test")

    restored, report = attach_images(export_annotations(faces), root_url, return_report=True)
    assert report.restored == len(faces) and report.not_found == 0
    assert rows(datasets.DatasetDict(test=restored)) == rows(datasets.DatasetDict(test=faces))
