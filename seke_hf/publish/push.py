"""Push a release folder to the Hub (or any Hub-compatible endpoint) as one atomic commit, safely.

- One commit holds the whole release (`HfApi.create_commit`): readers never see half a release. Shards of an
  earlier release that the new one no longer has are deleted in the same commit.
- Nothing is uploaded twice: files the repo already has are dropped from the commit (their hashes match), and LFS
  objects uploaded by an interrupted push are found by the LFS batch API and not sent again, so running the same
  push again completes it.
- Images stay protected: a release that contains images goes to a private or gated repo unless
  `allow_public_images=True` says otherwise, with a warning about the corpora's licences. Visibility and gating
  are set before the commit, so the images are never public, even for a moment.
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

from seke_hf.publish.layout import (
    DATA_DIR,
    MAX_SHARD_SIZE,
    Kind,
    Mode,
    build_repo,
    read_release,
    release_has_images,
)

logger = logging.getLogger("seke_hf.publish")

Gated = Literal["manual", "auto", "none"]
REPO_TYPE = "dataset"
LICENCE_WARNING = (
    "You are making a release WITH FACE IMAGES public. The source corpora (CK+, RAF-DB, AffectNet, DISFA, BP4D, "
    "Aff-Wild2) license their images for non-commercial research by signatories only and forbid redistribution: "
    "publishing them may breach those agreements. Prefer a private or gated repo, or an annotations-only release."
)


class PublishError(RuntimeError):
    """A push failed; the message says why (and never contains the token)."""


class UnsafeReleaseError(PublishError, ValueError):
    """A release with images was about to become public without `allow_public_images=True`."""


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
) -> CommitInfo:
    """Publish a release folder (from `build_repo`) or datasets by config (built first, with `kind`, `mode`,
    `build_info`) to the dataset repo `repo_id`, and return the commit (the current head if nothing changed).

    `private` and `gated` ("manual", "auto" or "none") are applied to the repo before the commit, unless the push
    opens a pull request (`create_pr=True`), which cannot change the target's settings. `token` defaults to the
    saved login / `HF_TOKEN`; `endpoint` to `HF_ENDPOINT`.
    """
    try:
        if isinstance(out_dir_or_datasets, Mapping):
            with tempfile.TemporaryDirectory(prefix="seke_release_") as tmp:
                folder = build_repo(
                    out_dir_or_datasets, Path(tmp) / "release", kind=kind, mode=mode, build_info=build_info,
                    max_shard_size=max_shard_size, repo_id=repo_id,
                )  # fmt: skip
                return _push_folder(folder, repo_id, private, gated, token, endpoint, create_pr,
                                    allow_public_images, commit_message)  # fmt: skip
        return _push_folder(Path(out_dir_or_datasets), repo_id, private, gated, token, endpoint, create_pr,
                            allow_public_images, commit_message)  # fmt: skip
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
) -> CommitInfo:
    release = read_release(folder)
    gated_value = _gated_setting(gated)
    has_images = release_has_images(folder)
    from seke_hf._version import __version__

    api = HfApi(endpoint=endpoint, token=token, library_name="seke-hf", library_version=__version__)
    if create_pr:
        info = api.repo_info(repo_id, repo_type=REPO_TYPE)
        _check_safety(has_images, bool(info.private), info.gated or False, allow_public_images, repo_id)
    else:
        _check_safety(has_images, private, gated_value, allow_public_images, repo_id)
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        api.update_repo_settings(repo_id, repo_type=REPO_TYPE, private=private, gated=gated_value)
    head = api.repo_info(repo_id, repo_type=REPO_TYPE)
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    stale = [p for p in api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head.sha)
             if p.startswith(f"{DATA_DIR}/") and p not in local]  # fmt: skip
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path)) for path in local
    ]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    message = commit_message or f"Publish {release['kind'].upper()} ({release['mode']}) with seke-hf {__version__}"
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
        commit.pr_url or commit.commit_url,
    )
    return commit


def _gated_setting(gated: Gated | bool | None) -> Literal["manual", "auto", False]:
    if gated in ("manual", "auto"):
        return gated  # type: ignore[return-value]
    if gated in (None, False, "none", "false", "no"):
        return False
    if gated is True:
        return "manual"
    raise ValueError(f"gated must be 'manual', 'auto' or 'none', not {gated!r}")


def _check_safety(has_images: bool, private: bool, gated: Any, allow_public_images: bool, repo_id: str) -> None:
    if not has_images or private:
        return
    if gated:
        logger.warning("%s will be gated, not private: every user you grant access can download the face images; "
                       "grant it only to holders of the corpora's licences.", repo_id)  # fmt: skip
        return
    if not allow_public_images:
        raise UnsafeReleaseError(
            f"refusing to make {repo_id} public: the release contains face images from licensed corpora. Push it "
            "private (private=True) or gated (gated='manual'), publish annotations only (build_repo(..., "
            "mode='annotations') / --annotations-only), or pass allow_public_images=True if you hold the right "
            "to publish these images."
        )
    warnings.warn(LICENCE_WARNING, UserWarning, stacklevel=4)
    logger.warning(LICENCE_WARNING)


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
