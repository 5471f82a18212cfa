"""Publishing FEID/FEAB: the local Hub layout, and pushes to a local Hub-protocol server read back by plain
`datasets` (real huggingface_hub and datasets clients, real HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import logging
import traceback
from pathlib import Path

import datasets
import pytest
from hub_server import shared_server
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from publish_data import ANNOTATED_FEATURES, comparable, release_configs

from seke_hf.publish import UnsafeReleaseError, build_repo, push, read_release, release_has_images
from seke_hf.release import export_annotations, image_columns

OWNER_TOKEN = "hf_seke_owner_0123456789abcdef"
OTHER_TOKEN = "hf_seke_stranger_fedcba9876543210"
ORG = "seke-lab"


@pytest.fixture(scope="module")
def hub():
    server = shared_server()
    server.add_user("owner", OWNER_TOKEN, orgs=(ORG,))
    server.add_user("stranger", OTHER_TOKEN)
    return server


@pytest.fixture(scope="module")
def configs():
    return release_configs()


@pytest.fixture(scope="module")
def release(configs, tmp_path_factory) -> Path:
    build_info = {"model": "gpt-4o", "svuamc": {"min_samples": 3, "max_samples": 16}, "requests": 61}
    return build_repo(configs, tmp_path_factory.mktemp("full") / "feid", kind="feid", build_info=build_info)


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _assert_same(loaded: datasets.DatasetDict | datasets.IterableDatasetDict, expected: datasets.DatasetDict):
    assert list(loaded) == list(expected)
    for split, ds in expected.items():
        assert loaded[split].features["expression"].names == ds.features["expression"].names
        assert comparable(loaded[split]) == comparable(ds), f"split {split} differs"


# -- the local layout ------------------------------------------------------------------------------------------------


def test_release_folder_loads_with_plain_datasets(release, configs, tmp_path):
    files = _files(release)
    assert {"README.md", "LICENSE", "seke_release.json"} <= set(files)
    assert not any(p.startswith("data/all/") for p in files), "`all` must reuse the per-corpus shards"
    assert read_release(release)["kind"] == "feid"
    recorded = read_release(release)["files"]  # every file build_repo wrote, with its hash: what push uploads
    assert recorded == {path: digest for path, digest in files.items() if path != "seke_release.json"}
    assert release_has_images(release)
    for name, expected in configs.items():
        _assert_same(datasets.load_dataset(str(release), name, cache_dir=str(tmp_path)), expected)
    assert list(datasets.load_dataset(str(release), cache_dir=str(tmp_path))) == ["train", "test"]  # default: all


def test_shards_respect_the_size_limit_and_rebuilds_are_byte_identical(configs, tmp_path):
    small = build_repo(configs, tmp_path / "a", max_shard_size="4KB")
    shards = sorted(p.name for p in (small / "data" / "rafdb").glob("train-*.parquet"))
    assert len(shards) > 1 and shards[0].endswith(f"-of-{len(shards):05d}.parquet")
    _assert_same(datasets.load_dataset(str(small), "rafdb", cache_dir=str(tmp_path / "c")), configs["rafdb"])
    again = build_repo(configs, tmp_path / "b", max_shard_size="4KB")
    assert _files(small) == _files(again)


def test_all_config_with_other_rows_gets_its_own_shards(configs, tmp_path):
    shuffled = {**configs, "all": datasets.DatasetDict({s: d.shuffle(seed=1) for s, d in configs["all"].items()})}
    out = build_repo(shuffled, tmp_path / "r")
    assert (out / "data" / "all").is_dir()
    _assert_same(datasets.load_dataset(str(out), "all", cache_dir=str(tmp_path / "c")), shuffled["all"])


def test_annotations_mode_drops_every_image_column(configs, tmp_path):
    out = build_repo(configs, tmp_path / "ann", mode="annotations")
    assert not release_has_images(out)
    loaded = datasets.load_dataset(str(out), "affectnet", cache_dir=str(tmp_path / "c"))
    assert not image_columns(loaded["train"].features)
    _assert_same(loaded, export_annotations(configs["affectnet"]))


def test_a_folder_that_is_not_a_release_is_never_overwritten(configs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        build_repo(configs, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# -- pushing ---------------------------------------------------------------------------------------------------------


def test_push_then_load_from_the_hub_and_repush_is_a_no_op(hub, release, configs, tmp_path):
    repo_id = f"{ORG}/feid"
    hub.clear_log()
    commit = push(release, repo_id, token=OWNER_TOKEN)
    repo = hub.repo(repo_id)
    assert repo.private and repo.gated == "manual"
    assert hub.lfs_uploads, "the Parquet shards go through LFS"
    assert sum(1 for method, path, _ in hub.requests if method == "POST" and "/commit/" in path) == 1  # atomic
    assert repo.refs["main"] == commit.oid

    for name, expected in configs.items():
        loaded = datasets.load_dataset(repo_id, name, token=OWNER_TOKEN, cache_dir=str(tmp_path / "c"))
        _assert_same(loaded, expected)
        streamed = datasets.load_dataset(repo_id, name, token=OWNER_TOKEN, streaming=True)
        _assert_same(streamed, expected)
    hub.clear_log()
    with pytest.raises((datasets.exceptions.DatasetNotFoundError, HfHubHTTPError)):  # private: nobody else sees it
        datasets.load_dataset(repo_id, "rafdb", token=OTHER_TOKEN, cache_dir=str(tmp_path / "c2"))
    assert hub.requests and all(status >= 400 for _, _, status in hub.requests)

    hub.clear_log()
    rebuilt = build_repo(configs, tmp_path / "rebuilt", build_info=read_release(release)["build_info"])
    again = push(rebuilt, repo_id, token=OWNER_TOKEN)
    assert hub.lfs_uploads == []
    assert not any("/commit/" in path for _, path, _ in hub.requests)
    assert again.oid == commit.oid == repo.refs["main"]


def test_an_interrupted_push_completes_when_run_again(hub, release, configs, tmp_path):
    repo_id = f"{ORG}/feid-interrupted"
    hub.clear_log()
    hub.fail_commits = 1  # the server fails the commit after every shard was uploaded
    with pytest.raises(HfHubHTTPError, match="500"):
        push(release, repo_id, token=OWNER_TOKEN)
    repo = hub.repo(repo_id)
    assert any(repo_of_upload == repo_id for repo_of_upload, _, _ in hub.lfs_uploads)
    assert set(repo.resolve("main").files) == {".gitattributes"}, "nothing was committed"

    hub.clear_log()
    push(release, repo_id, token=OWNER_TOKEN)
    assert hub.lfs_uploads == [], "objects uploaded by the interrupted push are not sent again"
    assert "data/rafdb/train-00000-of-00001.parquet" in repo.resolve("main").files
    _assert_same(datasets.load_dataset(repo_id, "disfa", token=OWNER_TOKEN, cache_dir=str(tmp_path)), configs["disfa"])


def test_a_new_release_replaces_stale_shards_in_the_same_commit(hub, configs, tmp_path):
    repo_id = f"{ORG}/feid-replace"
    push(build_repo(configs, tmp_path / "many", max_shard_size="4KB"), repo_id, token=OWNER_TOKEN)
    before = set(hub.repo(repo_id).resolve("main").files)
    push(build_repo(configs, tmp_path / "one"), repo_id, token=OWNER_TOKEN)
    after = set(hub.repo(repo_id).resolve("main").files)
    local = set(_files(tmp_path / "one")) | {".gitattributes"}
    assert after == local and before - after
    _assert_same(datasets.load_dataset(repo_id, "rafdb", token=OWNER_TOKEN, cache_dir=str(tmp_path)), configs["rafdb"])


def test_create_pr_leaves_main_untouched(hub, release):
    repo_id = f"{ORG}/feid-pr"
    first = push(release, repo_id, token=OWNER_TOKEN)
    changed = build_repo(release_configs(), release.parent / "changed", build_info={"model": "other-model"})
    proposal = push(changed, repo_id, token=OWNER_TOKEN, create_pr=True)
    assert proposal.pr_url and hub.repo(repo_id).refs["main"] == first.oid
    assert hub.repo(repo_id).refs["refs/pr/1"] == proposal.oid


def test_a_public_release_with_images_needs_explicit_consent(hub, release, configs, tmp_path):
    repo_id = f"{ORG}/feid-public"
    with pytest.raises(UnsafeReleaseError, match="face images"):
        push(release, repo_id, private=False, gated="none", token=OWNER_TOKEN)
    assert ("dataset", repo_id) not in hub.repos, "nothing is created before the safety check"

    with pytest.warns(UserWarning, match="licen"):
        push(release, repo_id, private=False, gated="none", token=OWNER_TOKEN, allow_public_images=True)
    assert not hub.repo(repo_id).private and hub.repo(repo_id).gated is False
    loaded = datasets.load_dataset(repo_id, "rafdb", cache_dir=str(tmp_path))  # anonymous read of a public repo
    _assert_same(loaded, configs["rafdb"])


def test_gated_public_release_is_allowed_and_readable_only_by_the_owner(hub, release, tmp_path):
    repo_id = f"{ORG}/feid-gated"
    push(release, repo_id, private=False, gated="auto", token=OWNER_TOKEN)
    assert hub.repo(repo_id).gated == "auto" and not hub.repo(repo_id).private
    with pytest.raises(datasets.exceptions.DatasetNotFoundError, match="gated"):
        datasets.load_dataset(repo_id, "rafdb", token=OTHER_TOKEN, cache_dir=str(tmp_path))


def test_annotations_only_release_can_be_public(hub, configs, recwarn):
    repo_id = f"{ORG}/feid-annotations"
    push(configs, repo_id, private=False, gated="none", token=OWNER_TOKEN, mode="annotations")
    assert not hub.repo(repo_id).private
    assert not [w for w in recwarn if "licen" in str(w.message)]
    assert not any(p.endswith(".jpg") for p in hub.repo(repo_id).resolve("main").files)


@pytest.mark.parametrize("token, repo_id", [("hf_not_a_known_token_42", f"{ORG}/x"), (OTHER_TOKEN, f"{ORG}/feid")])
def test_the_token_never_appears_in_errors_or_logs(hub, release, token, repo_id, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as info:
        push(release, repo_id, token=token)
    text = "".join(traceback.format_exception(info.value)) + caplog.text + "".join(capsys.readouterr())
    assert "401" in text or "403" in text or "not found" in text.lower()
    assert token not in text


def test_the_token_never_reaches_the_card_or_any_pushed_file(hub, configs, tmp_path):
    build_info = {"model": "gpt-4o", "api_key": "sk-live-secret", "server": {"auth_token": "x1-secret"},
                  "keys": [OWNER_TOKEN], "requests": 7}  # fmt: skip
    out = build_repo(configs, tmp_path / "r", build_info=build_info)
    push(out, f"{ORG}/feid-card", token=OWNER_TOKEN)
    card = HfApi(token=OWNER_TOKEN).hf_hub_download(f"{ORG}/feid-card", "README.md", repo_type="dataset")
    assert "gpt-4o" in Path(card).read_text()
    assert read_release(out)["build_info"]["requests"] == 7
    for path, blob in hub.repo(f"{ORG}/feid-card").resolve("main").files.items():
        for secret in (b"sk-live-secret", OWNER_TOKEN.encode(), b"x1-secret"):
            assert secret not in blob.data, f"{secret!r} leaked into {path}"


def test_publish_cli_pushes_annotations_only(hub, release, monkeypatch, tmp_path):
    import argparse

    from seke_hf.cli import publish as publish_cli

    parser = argparse.ArgumentParser()
    publish_cli.add_parser(parser.add_subparsers())
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    command = ["publish", str(release), "--repo-id", f"{ORG}/feid-cli", "--annotations-only", "--public"]
    args = parser.parse_args([*command, "--gated", "none"])
    assert args.func(args) == 0
    repo = hub.repo(f"{ORG}/feid-cli")
    assert not repo.private and repo.gated is False
    loaded = datasets.load_dataset(f"{ORG}/feid-cli", "disfa", cache_dir=str(tmp_path))
    assert not image_columns(loaded["train"].features)
    assert set(loaded["train"].column_names) == set(ANNOTATED_FEATURES) - {"image", "images"}


def test_annotations_push_plus_attach_images_restores_the_full_rows(hub, tmp_path):
    from seke_hf.corpora import load_corpus
    from seke_hf.release import attach_images
    from seke_hf.synthetic.rafdb import write_rafdb

    write_rafdb(tmp_path / "corpora" / "RAF-DB", n_train=4, n_test=3)
    full = load_corpus("rafdb", tmp_path / "corpora" / "RAF-DB", config="aligned", cache_dir=str(tmp_path / "c1"))
    push({"rafdb": full}, f"{ORG}/feid-attach", token=OWNER_TOKEN, mode="annotations", private=False, gated="none")
    published = datasets.load_dataset(f"{ORG}/feid-attach", "rafdb", cache_dir=str(tmp_path / "c2"))
    assert not image_columns(published["train"].features)
    restored = attach_images(published, tmp_path / "corpora", cache_dir=str(tmp_path / "c3"))
    for split in full:
        assert comparable(restored[split].select_columns(full[split].column_names)) == comparable(full[split])
