"""Hostile and broken release folders and annotation releases (issue 17, items 1, 2, 3 and 10), tried as an attacker
or a careless user would, against the local Hub-protocol server over real HTTP with the real clients.

After every public push, an anonymous reader must find no image bytes and no file the release did not write, at
any revision the repo still serves.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import shared_server
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from publish_data import release_configs

from seke_hf.corpora import load_corpus
from seke_hf.publish import UnsafeReleaseError, build_repo, push
from seke_hf.release import attach_images, export_annotations, merge_annotations
from seke_hf.synthetic.faces import face_bytes
from seke_hf.synthetic.rafdb import write_rafdb

TOKEN = "hf_hostile_owner_5a5a5a5a5a5a5a5a"
ORG = "hostile-lab"
MANIFEST = "seke_release.json"


@pytest.fixture(scope="module")
def hub():
    server = shared_server()
    server.add_user("hostile-owner", TOKEN, orgs=(ORG,))
    return server


@pytest.fixture(scope="module")
def configs():
    return release_configs()


@pytest.fixture(scope="module")
def faces(configs) -> list[bytes]:
    """Every face of the releases (image and chat copies): none may ever be readable anonymously."""
    found = set()
    for dd in configs.values():
        for ds in dd.values():
            raw = ds.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
            found.update(row["image"]["bytes"] for row in raw)
    return sorted(found)


@pytest.fixture(scope="module")
def built(configs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("built")
    return {
        "annotations": build_repo(configs, root / "annotations", mode="annotations"),
        "full": build_repo(configs, root / "full"),
    }


@pytest.fixture
def annotations_release(built, tmp_path) -> Path:
    """A fresh copy of an annotations-only release, free to be tampered with."""
    return Path(shutil.copytree(built["annotations"], tmp_path / "release"))


def _public(folder: Path, repo_id: str, **options):
    return push(folder, repo_id, private=False, gated="none", token=TOKEN, **options)


def _manifest(folder: Path) -> dict[str, str]:
    return json.loads((folder / MANIFEST).read_text())["files"]


def _anonymous_files(repo_id: str, tmp_path: Path) -> dict[tuple[str, str], bytes]:
    """Every file at every commit an anonymous reader can list, downloaded anonymously: (commit, path) -> bytes."""
    api = HfApi(token=False)
    files = {}
    for commit in api.list_repo_commits(repo_id, repo_type="dataset", token=False):
        for path in api.list_repo_files(repo_id, repo_type="dataset", revision=commit.commit_id, token=False):
            local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=commit.commit_id, token=False,
                                        cache_dir=str(tmp_path / "anonymous"))  # fmt: skip
            files[commit.commit_id, path] = Path(local).read_bytes()
    return files


def _assert_nothing_leaks(repo_id: str, release: Path, faces: list[bytes], tmp_path: Path) -> None:
    allowed = set(_manifest(release)) | {MANIFEST, ".gitattributes"}
    files = _anonymous_files(repo_id, tmp_path)
    assert files, "the repo is readable anonymously"
    for (commit, path), data in files.items():
        assert path in allowed, f"{path} (at {commit[:8]}) was not written by build_repo"
        assert not any(face in data for face in faces), f"a face is readable in {path} at {commit[:8]}"
        assert b"\xff\xd8\xff" not in data and b"\x89PNG" not in data, f"image bytes in {path} at {commit[:8]}"
        if path.endswith(".parquet"):
            schema = pq.read_schema(io.BytesIO(data))
            assert not any("binary" in str(f.type) for f in schema), f"binary column in {path} at {commit[:8]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 1. push uploads exactly what build_repo wrote ------------------------------------------------------------------


def test_loose_jpegs_under_data_are_refused(hub, annotations_release):
    (annotations_release / "data" / "rafdb" / "face_0001.jpg").write_bytes(face_bytes(7, size=(24, 24)))
    with pytest.raises(UnsafeReleaseError, match=r"data/rafdb/face_0001\.jpg"):
        _public(annotations_release, f"{ORG}/loose-jpegs")
    assert ("dataset", f"{ORG}/loose-jpegs") not in hub.repos, "refused before the repo exists"


def test_a_dotenv_beside_the_card_is_refused_even_for_a_private_push(hub, annotations_release):
    (annotations_release / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    for options in ({"private": False, "gated": "none"}, {}):
        with pytest.raises(UnsafeReleaseError, match=r"\.env"):
            push(annotations_release, f"{ORG}/dotenv", token=TOKEN, **options)
    assert ("dataset", f"{ORG}/dotenv") not in hub.repos


def _image_bytes_table(faces: list[bytes]) -> pa.Table:
    """Face bytes in a plain binary column: no `datasets` metadata says these are images."""
    return pa.table({"sample_id": [f"x/{i}" for i in range(len(faces))], "pixels": pa.array(faces, pa.binary())})


@pytest.mark.parametrize("where", ["faces.parquet", "extra/faces.parquet", "data/rafdb/train-00001-of-00002.parquet"])
def test_a_parquet_of_image_bytes_that_build_repo_did_not_write_is_refused(hub, annotations_release, faces, where):
    target = annotations_release / where
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_image_bytes_table(faces[:3]), target)
    with pytest.raises(UnsafeReleaseError, match=where.replace(".", r"\.")):
        _public(annotations_release, f"{ORG}/stray-parquet")
    assert ("dataset", f"{ORG}/stray-parquet") not in hub.repos


def _pixels(face: bytes) -> list[int]:
    import PIL.Image

    return list(PIL.Image.open(io.BytesIO(face)).convert("L").tobytes())


@pytest.mark.parametrize("kind", ["bytes", "pixels"])
def test_a_shard_with_images_is_refused_whatever_its_metadata_and_the_manifest_say(
    hub, annotations_release, faces, kind
):
    shard = annotations_release / "data" / "disfa" / "train-00000-of-00001.parquet"
    rows = pq.read_table(shard)
    chosen = faces[: rows.num_rows]
    column = (
        pa.array(chosen, pa.binary())
        if kind == "bytes"
        else pa.array([_pixels(f) for f in chosen], pa.list_(pa.uint8()))
    )
    swapped = rows.append_column("pixels", column)
    pq.write_table(swapped.replace_schema_metadata(rows.schema.metadata), shard)  # metadata: no such column
    manifest = json.loads((annotations_release / MANIFEST).read_text())
    manifest["files"][shard.relative_to(annotations_release).as_posix()] = _sha256(shard)  # the manifest lies too
    (annotations_release / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UnsafeReleaseError, match=r"(?s)data/disfa/train-00000-of-00001\.parquet.*pixels"):
        _public(annotations_release, f"{ORG}/lying-shard")
    assert ("dataset", f"{ORG}/lying-shard") not in hub.repos


def test_images_encoded_as_text_are_found(hub, annotations_release):
    import base64

    shard = annotations_release / "data" / "rafdb" / "test-00000-of-00001.parquet"
    rows = pq.read_table(shard)
    encoded = base64.b64encode(face_bytes(3, size=(24, 24))).decode()
    column = rows.column("status_reason").to_pylist()
    column[1] = encoded
    rows = rows.set_column(rows.schema.get_field_index("status_reason"), "status_reason", pa.array(column))
    pq.write_table(rows, shard)
    manifest = json.loads((annotations_release / MANIFEST).read_text())
    manifest["files"]["data/rafdb/test-00000-of-00001.parquet"] = _sha256(shard)
    (annotations_release / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UnsafeReleaseError, match="status_reason"):
        _public(annotations_release, f"{ORG}/base64")


def test_an_annotations_only_copy_reads_only_what_build_repo_wrote(hub, built, tmp_path, monkeypatch):
    from seke_hf.cli import publish as publish_cli

    folder = Path(shutil.copytree(built["full"], tmp_path / "full"))
    stray = pq.read_table(folder / "data" / "rafdb" / "train-00000-of-00001.parquet")
    pq.write_table(stray, folder / "data" / "rafdb" / "train-00001-of-00002.parquet")  # matches the card's pattern
    parser = argparse.ArgumentParser()
    publish_cli.add_parser(parser.add_subparsers())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    args = parser.parse_args(["publish", str(folder), "--repo-id", f"{ORG}/stray-shard", "--annotations-only"])
    with pytest.raises(UnsafeReleaseError, match=r"train-00001-of-00002\.parquet"):
        args.func(args)
    assert ("dataset", f"{ORG}/stray-shard") not in hub.repos


def test_a_file_changed_after_build_repo_is_refused(hub, annotations_release):
    card = annotations_release / "README.md"
    card.write_text(card.read_text() + "\n![face](data:image/jpeg;base64,/9j/4AAQSkZJRg==)\n")
    with pytest.raises(UnsafeReleaseError, match=r"(?s)changed since build_repo.*README\.md"):
        push(annotations_release, f"{ORG}/edited-card", token=TOKEN)


def test_a_symlink_in_the_folder_is_refused(hub, annotations_release, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    license_file = annotations_release / "LICENSE"
    license_file.unlink()
    license_file.symlink_to(secret)
    with pytest.raises(UnsafeReleaseError, match="LICENSE"):
        push(annotations_release, f"{ORG}/symlink", token=TOKEN)


def test_a_public_push_serves_exactly_the_release_to_anonymous_readers(hub, annotations_release, faces, tmp_path):
    repo_id = f"{ORG}/clean-public"
    _public(annotations_release, repo_id)
    repo = hub.repo(repo_id)
    assert not repo.private and repo.gated is False
    assert set(repo.resolve("main").files) == set(_manifest(annotations_release)) | {MANIFEST, ".gitattributes"}
    _assert_nothing_leaks(repo_id, annotations_release, faces, tmp_path)


def test_files_in_the_repo_that_the_release_did_not_write_are_deleted(hub, annotations_release, faces, tmp_path):
    repo_id = f"{ORG}/stranger-files"
    HfApi(token=TOKEN).create_repo(repo_id, repo_type="dataset", private=True)
    HfApi(token=TOKEN).upload_file(path_or_fileobj=b"SECRET=1\n", path_in_repo="notes/.env", repo_id=repo_id,
                                   repo_type="dataset")  # fmt: skip
    push(annotations_release, repo_id, token=TOKEN, squash_history=True, private=False, gated="none")
    assert "notes/.env" not in hub.repo(repo_id).resolve("main").files
    _assert_nothing_leaks(repo_id, annotations_release, faces, tmp_path)


# -- 2. history and failed commits ----------------------------------------------------------------------------------


def test_a_repo_whose_history_holds_images_is_never_made_public(hub, built, faces, tmp_path):
    repo_id = f"{ORG}/was-full"
    first = push(built["full"], repo_id, token=TOKEN)  # private and gated: fine
    with pytest.raises(UnsafeReleaseError, match=r"(?s)data/rafdb/train-00000-of-00001\.parquet.*new repo.*squash"):
        _public(built["annotations"], repo_id)
    repo = hub.repo(repo_id)
    assert repo.private and repo.gated == "manual" and repo.refs["main"] == first.oid, "nothing changed"
    with pytest.raises(HfHubHTTPError):
        HfApi(token=False).list_repo_files(repo_id, repo_type="dataset", token=False)


def test_a_repo_with_images_in_history_is_never_made_ungated_either(hub, built):
    repo_id = f"{ORG}/was-gated"
    push(built["full"], repo_id, token=TOKEN, private=False, gated="manual")
    with pytest.raises(UnsafeReleaseError, match="squash"):
        _public(built["annotations"], repo_id)
    assert hub.repo(repo_id).gated == "manual"


def test_a_failed_commit_never_leaves_the_repo_public(hub, built, faces, tmp_path):
    repo_id = f"{ORG}/failing-commit"
    hub.fail_commits = 1
    with pytest.raises(HfHubHTTPError, match="500"):
        _public(built["annotations"], repo_id)
    assert hub.repo(repo_id).private, "visibility changes towards public only after a successful commit"
    _public(built["annotations"], repo_id)  # run again: completes, then opens
    assert not hub.repo(repo_id).private
    _assert_nothing_leaks(repo_id, built["annotations"], faces, tmp_path)


def test_squash_history_makes_a_former_full_release_safe_to_open(hub, built, faces, tmp_path, monkeypatch):
    from seke_hf.cli import publish as publish_cli

    repo_id = f"{ORG}/squashed"
    full = push(built["full"], repo_id, token=TOKEN)
    parser = argparse.ArgumentParser()
    publish_cli.add_parser(parser.add_subparsers())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    args = parser.parse_args(["publish", str(built["annotations"]), "--repo-id", repo_id, "--public", "--gated",
                              "none", "--squash-history"])  # fmt: skip
    assert args.func(args) == 0
    repo = hub.repo(repo_id)
    assert not repo.private and repo.gated is False
    assert len(HfApi(token=False).list_repo_commits(repo_id, repo_type="dataset", token=False)) == 1
    old_shard = "data/rafdb/train-00000-of-00001.parquet"
    with pytest.raises(HfHubHTTPError):  # the earlier revision is gone, not merely unlisted
        HfApi(token=False).hf_hub_download(repo_id, old_shard, repo_type="dataset", revision=full.oid, token=False,
                                           cache_dir=str(tmp_path / "old"))  # fmt: skip
    _assert_nothing_leaks(repo_id, built["annotations"], faces, tmp_path)


def test_images_in_a_pull_request_block_opening_even_with_squash(hub, built):
    repo_id = f"{ORG}/pr-images"
    push(built["annotations"], repo_id, token=TOKEN)
    push(built["full"], repo_id, token=TOKEN, create_pr=True)
    before = dict(hub.repo(repo_id).refs)
    with pytest.raises(UnsafeReleaseError, match=r"refs/pr/1"):
        _public(built["annotations"], repo_id, squash_history=True)
    assert hub.repo(repo_id).private and hub.repo(repo_id).refs == before, "refused before rewriting anything"


def test_images_in_the_hubs_parquet_conversion_block_opening_even_with_squash(hub, built):
    repo_id = f"{ORG}/converted"
    full = push(built["full"], repo_id, token=TOKEN)
    hub.repo(repo_id).refs["refs/convert/parquet"] = full.oid  # what the Hub's dataset viewer keeps of a release
    with pytest.raises(UnsafeReleaseError, match=r"(?s)refs/convert/parquet.*new repo"):
        _public(built["annotations"], repo_id, squash_history=True)
    assert hub.repo(repo_id).private and hub.repo(repo_id).refs["main"] == full.oid


# -- 3. a release never carries a local file into a shard ----------------------------------------------------------


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    write_rafdb(root / "RAF-DB", n_train=4, n_test=2)
    return root


@pytest.fixture(scope="module")
def rafdb(corpora, tmp_path_factory) -> datasets.DatasetDict:
    return load_corpus("rafdb", corpora / "RAF-DB", config="aligned", cache_dir=str(tmp_path_factory.mktemp("c")))


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "home" / ".ssh" / "id_ed25519"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY----- s3cr3t-k3y-b0dy\n")
    return path


def _with_foreign_image_column(rows: datasets.Dataset, name: str, path: Path) -> datasets.Dataset:
    cells = [{"bytes": None, "path": str(path)}] * len(rows)
    return rows.add_column(name, cells).cast_column(name, datasets.Image(decode=False))


def _folder_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_a_foreign_image_column_of_local_paths_never_reaches_a_shard(rafdb, corpora, secret, tmp_path, caplog):
    hostile = tmp_path / "hostile.parquet"
    _with_foreign_image_column(export_annotations(rafdb["train"]), "photo", secret).to_parquet(str(hostile))
    published = datasets.load_dataset("parquet", data_files=str(hostile), split="train", cache_dir=str(tmp_path))
    assert isinstance(published.features["photo"], datasets.Image), "the release declares it as an image"
    restored = attach_images(published, corpora, cache_dir=str(tmp_path / "c"))
    assert "photo" not in restored.column_names and "photo" in caplog.text
    out = build_repo({"rafdb": restored}, tmp_path / "release", mode="full")
    assert secret.read_bytes() not in _folder_bytes(out)


def test_build_repo_refuses_an_undeclared_file_column(rafdb, secret, tmp_path):
    rows = _with_foreign_image_column(rafdb["train"], "photo", secret)
    with pytest.raises(ValueError, match="photo"):
        build_repo({"rafdb": rows}, tmp_path / "release", mode="full")
    assert not (tmp_path / "release").exists(), "refused before writing anything"


def test_merged_annotations_never_replace_the_images(rafdb, secret, tmp_path):
    rows = rafdb["train"]
    annotations = export_annotations(rows).select_columns(["sample_id", "valence"])
    annotations = annotations.add_column("image", [str(secret)] * len(rows))  # a string column named like the face
    merged = merge_annotations(rows, annotations)
    raw = merged.cast_column("image", datasets.Image(decode=False))
    original = rows.cast_column("image", datasets.Image(decode=False))
    assert raw["image"] == original["image"]
    out = build_repo({"rafdb": merged}, tmp_path / "release", mode="full")
    assert secret.read_bytes() not in _folder_bytes(out)


# -- 10. attach_images reports what it cannot find -----------------------------------------------------------------


@pytest.mark.parametrize("chat", [False, True])
def test_attach_images_with_no_id_found_returns_its_report(rafdb, corpora, tmp_path, chat):
    rows = export_annotations(rafdb["train"]).map(lambda row: {"sample_id": "rafdb/nobody_" + row["sample_id"][-4:]})
    if chat:
        rows = rows.add_column("messages", [[{"role": "user", "content": "?"}]] * len(rows))
    restored, report = attach_images(rows, corpora, return_report=True, cache_dir=str(tmp_path))
    assert len(restored) == 0 and report.restored == 0 and report.not_found == len(rows)
    assert ("images" if chat else "image") in restored.column_names
    kept = attach_images(rows, corpora, on_missing="keep", cache_dir=str(tmp_path))
    assert len(kept) == len(rows)


def test_integer_sample_ids_are_reported_not_crashed_on(rafdb, corpora, tmp_path):
    rows = export_annotations(rafdb["train"]).remove_columns("sample_id")
    rows = rows.add_column("sample_id", list(range(1000, 1000 + len(rows))))
    restored, report = attach_images(rows, corpora, return_report=True, cache_dir=str(tmp_path))
    assert len(restored) == 0 and "1000" in str(report)
    with pytest.raises(LookupError, match="1000"):
        attach_images(rows, corpora, on_missing="raise", cache_dir=str(tmp_path))
