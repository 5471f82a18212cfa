"""Push a release folder to the Hub (or any Hub-compatible endpoint) as one atomic commit, safely.

- Exactly the release: the files `build_repo` listed in `seke_release.json`, with the hashes it recorded. A folder
  holding anything else (a `.env`, loose images, a stray Parquet file), a file changed since, or a symbolic link is
  refused, naming the files. Files of the repo that the release does not have are deleted in the same commit, so
  the head of the repo is the release and nothing else.
- One commit holds the whole release (`HfApi.create_commit`): readers never see half a release.
- Nothing is uploaded twice: files the repo already has are dropped from the commit (their hashes match), and LFS
  objects uploaded by an interrupted push are found by the LFS batch API and not sent again, so running the same
  push again completes it.
- Images stay protected. Whether a file holds images is read from its content (every Parquet file's columns,
  whatever its metadata says), not from its name or metadata. A release with images goes to a private or gated
  repo unless `allow_public_images=True`. Settings that protect (private, gated) are applied before the commit;
  settings that open the repo (public and ungated) only after the commit succeeded. A repo is never opened while
  any revision it serves (every commit of every branch, tag and pull request) holds images: push to a new repo, or
  rewrite the history of `main` to the new commit first (`squash_history=True`).
- The token is only handed to `huggingface_hub`: it never reaches a card, a log line or an error message.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import datasets
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from seke_hf.publish.content import file_findings
from seke_hf.publish.errors import PublishError, UnsafeReleaseError
from seke_hf.publish.files import RELEASE_FILE
from seke_hf.publish.history import history_findings
from seke_hf.publish.layout import MAX_SHARD_SIZE, Kind, Mode, build_repo
from seke_hf.publish.manifest import expected_files, read_release
from seke_hf.urls import public_url

logger = logging.getLogger("seke_hf.publish")

Gated = Literal["manual", "auto", "none"]
REPO_TYPE = "dataset"
MAIN = "main"
MAIN_REF = f"refs/heads/{MAIN}"
LICENCE_WARNING = (
    "You are making a release WITH FACE IMAGES public. The source corpora (CK+, RAF-DB, AffectNet, DISFA, BP4D, "
    "Aff-Wild2) license their images for non-commercial research by signatories only and forbid redistribution: "
    "publishing them may breach those agreements. Prefer a private or gated repo, or an annotations-only release."
)


def push(
    out_dir_or_datasets: str | os.PathLike | Mapping[str, datasets.DatasetDict | datasets.Dataset],
    repo_id: str,
    private: bool = True,
    gated: Gated | bool | None = "manual",
    token: str | None = None,
    endpoint: str | None = None,
    create_pr: bool = False,
    allow_public_images: bool = False,
    *,
    kind: Kind = "feid",
    mode: Mode = "full",
    build_info: Mapping[str, Any] | None = None,
    max_shard_size: int | str = MAX_SHARD_SIZE,
    commit_message: str | None = None,
    squash_history: bool = False,
) -> CommitInfo:
    """Publish a release folder (from `build_repo`) or datasets by config (built first, with `kind`, `mode`,
    `build_info`) to the dataset repo `repo_id`, and return the commit (the current head if nothing changed).

    `private` and `gated` ("manual", "auto" or "none") are applied to the repo: protecting ones before the commit,
    opening ones after it succeeded; a pull request (`create_pr=True`) changes no settings. A repo whose history
    holds images is not made public and ungated; `squash_history=True` rewrites the history of `main` to the new
    commit first (irreversible). `token` defaults to the saved login / `HF_TOKEN`; `endpoint` to `HF_ENDPOINT`.
    """
    try:
        if isinstance(out_dir_or_datasets, Mapping):
            with tempfile.TemporaryDirectory(prefix="seke_release_") as tmp:
                folder = build_repo(
                    out_dir_or_datasets, Path(tmp) / "release", kind=kind, mode=mode, build_info=build_info,
                    max_shard_size=max_shard_size, repo_id=repo_id,
                )  # fmt: skip
                return _push_folder(folder, repo_id, private, gated, token, endpoint, create_pr,
                                    allow_public_images, commit_message, squash_history)  # fmt: skip
        return _push_folder(Path(out_dir_or_datasets), repo_id, private, gated, token, endpoint, create_pr,
                            allow_public_images, commit_message, squash_history)  # fmt: skip
    except Exception as e:
        if token and _mentions(e, token):  # never let a token escape through an error message or its causes
            raise PublishError(f"push to {repo_id} failed: {type(e).__name__}: " + _redact(str(e), token)) from None
        raise


def _push_folder(
    folder: Path,
    repo_id: str,
    private: bool,
    gated: Gated | bool | None,
    token: str | None,
    endpoint: str | None,
    create_pr: bool,
    allow_public_images: bool,
    commit_message: str | None,
    squash_history: bool,
) -> CommitInfo:
    gated_value = _gated_setting(gated)
    release = read_release(folder)
    additions, images = _release_operations(folder)
    from seke_hf._version import __version__

    api = HfApi(endpoint=endpoint, token=token, library_name="seke-hf", library_version=__version__)
    message = commit_message or f"Publish {release['kind'].upper()} ({release['mode']}) with seke-hf {__version__}"
    if create_pr:
        if squash_history:
            raise ValueError("squash_history rewrites the main branch: it cannot be combined with create_pr")
        info = api.repo_info(repo_id, repo_type=REPO_TYPE)
        _check_safety(images, bool(info.private), info.gated or False, allow_public_images, repo_id)
        return _commit(api, repo_id, additions, message, create_pr=True)

    _check_safety(images, private, gated_value, allow_public_images, repo_id)
    current = _settings(api, repo_id)
    opens = _is_open(private, gated_value) and (current is None or not _is_open(*current))
    if opens and current is not None and not allow_public_images:
        _check_history(api, repo_id, skip_refs=(MAIN_REF,) if squash_history else (), squash=squash_history)
    if current is None:  # created private: it opens, if asked to, once it holds the release
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=True, exist_ok=True)
        current = (True, False)
    protected = (private or current[0], gated_value or current[1])  # the stricter of the current and the target
    api.update_repo_settings(repo_id, repo_type=REPO_TYPE, private=protected[0], gated=protected[1])
    commit = _commit(api, repo_id, additions, message, create_pr=False)
    if squash_history:
        api.super_squash_history(repo_id, repo_type=REPO_TYPE, branch=MAIN, commit_message=message)
        head = api.repo_info(repo_id, repo_type=REPO_TYPE).sha
        url = f"{public_url(api.endpoint)}/{REPO_TYPE}s/{repo_id}/commit/{head}"
        commit = CommitInfo(commit_url=url, commit_message=message, commit_description="", oid=head)
        logger.info("history of %s rewritten to one commit: %s", repo_id, commit.commit_url)
        if opens and not allow_public_images:
            _check_history(api, repo_id, skip_refs=(), squash=True)
    if (private, gated_value) != protected:
        api.update_repo_settings(repo_id, repo_type=REPO_TYPE, private=private, gated=gated_value)
        logger.info("%s opened: private=%s, gated=%s", repo_id, private, gated_value)
    return commit


def _release_operations(folder: Path) -> tuple[list[CommitOperationAdd], dict[str, list[str]]]:
    """The uploads of exactly the release in `folder` (checked against its manifest, hashes included), and what
    in them may hold images ({path: reasons}, read from the files' content)."""
    expected = expected_files(folder)
    additions = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in [*expected, RELEASE_FILE]]
    changed = [op.path_in_repo for op in additions
               if op.path_in_repo in expected and op.upload_info.sha256.hex() != expected[op.path_in_repo]]  # fmt: skip
    if changed:
        raise UnsafeReleaseError(
            f"refusing to push {folder}: files changed since build_repo wrote them: {', '.join(changed)}. "
            "Rebuild the release (build_repo) rather than editing it."
        )
    images = {op.path_in_repo: found for op in additions if (found := file_findings(folder / op.path_in_repo))}
    return additions, images


def _commit(api: HfApi, repo_id: str, additions: list[CommitOperationAdd], message: str, create_pr: bool) -> CommitInfo:
    """One commit that makes the head of `main` (or a pull request) exactly the release."""
    head = api.repo_info(repo_id, repo_type=REPO_TYPE)
    keep = {op.path_in_repo for op in additions} | {".gitattributes"}
    stale = [p for p in api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head.sha) if p not in keep]
    if stale:
        logger.info("deleting %d file(s) of %s that the release does not have: %s", len(stale), repo_id,
                    ", ".join(stale[:10]))  # fmt: skip
    operations: list[CommitOperationAdd | CommitOperationDelete] = [*additions]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=message,
        repo_type=REPO_TYPE,
        create_pr=create_pr,
        parent_commit=head.sha,
    )
    changed = commit.oid != head.sha
    logger.info(
        "%s %s: %s",
        "published" if changed else "unchanged, nothing to commit:",
        repo_id,
        public_url(commit.pr_url or commit.commit_url),
    )
    return commit


def _settings(api: HfApi, repo_id: str) -> tuple[bool, Any] | None:
    """(private, gated) of the repo, or None if it does not exist yet."""
    try:
        info = api.repo_info(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return None
    return bool(info.private), info.gated or False


def _is_open(private: bool, gated: Any) -> bool:
    """Anyone can read every revision: public and ungated."""
    return not private and not gated


def _check_history(api: HfApi, repo_id: str, skip_refs: tuple[str, ...], squash: bool) -> None:
    found = history_findings(api, repo_id, repo_type=REPO_TYPE, skip_refs=skip_refs)
    if not found:
        return
    listed = "; ".join(found[:10]) + ("; and more" if len(found) > 10 else "")
    if squash:
        how = ("Rewriting main (squash_history) does not reach them: push to a new repo (or delete those branches, "
               "tags or pull requests first; a refs/convert/ branch is the Hub's own copy of the data).")  # fmt: skip
    else:
        how = ("Push to a new repo instead, or rewrite the history of main to the new commit first with "
               "squash_history=True (seke-hf publish --squash-history; irreversible). Or keep the repo private or "
               "gated.")  # fmt: skip
    raise UnsafeReleaseError(
        f"refusing to make {repo_id} public and ungated: anyone could then read every revision it serves, and these "
        f"hold images or binary data: {listed}. {how}"
    )


def _gated_setting(gated: Gated | bool | None) -> Literal["manual", "auto", False]:
    if gated in ("manual", "auto"):
        return gated  # type: ignore[return-value]
    if gated in (None, False, "none", "false", "no"):
        return False
    if gated is True:
        return "manual"
    raise ValueError(f"gated must be 'manual', 'auto' or 'none', not {gated!r}")


def _check_safety(
    images: Mapping[str, list[str]], private: bool, gated: Any, allow_public_images: bool, repo_id: str
) -> None:
    if not images or private:
        return
    if gated:
        logger.warning("%s will be gated, not private: every user you grant access can download the face images; "
                       "grant it only to holders of the corpora's licences.", repo_id)  # fmt: skip
        return
    if not allow_public_images:
        raise UnsafeReleaseError(
            f"refusing to make {repo_id} public: the release contains face images from licensed corpora "
            f"({_describe(images)}). Push it "
            "private (private=True) or gated (gated='manual'), publish annotations only (build_repo(..., "
            "mode='annotations') / --annotations-only), or pass allow_public_images=True if you hold the right "
            "to publish these images."
        )
    warnings.warn(LICENCE_WARNING, UserWarning, stacklevel=4)
    logger.warning(LICENCE_WARNING)


def _describe(findings: Mapping[str, list[str]], limit: int = 5) -> str:
    items = [f"{path}: {'; '.join(reasons)}" for path, reasons in findings.items()]
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more files" if len(items) > limit else "")


def _mentions(error: BaseException, secret: str) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if secret in str(current) or secret in repr(current.args):
            return True
        current = current.__cause__ or current.__context__
    return False


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***")
