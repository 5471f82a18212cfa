"""The release manifest: `seke_release.json` lists every file `build_repo` wrote with its sha256, so `push` uploads
exactly the release and nothing that happened to lie in the folder (a `.env`, loose images, a stray Parquet file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seke_hf.publish.errors import UnsafeReleaseError
from seke_hf.publish.files import CARD_FILE, DATA_DIR, LICENSE_FILE, RELEASE_FILE

FILES_KEY = "files"
SHARD_PATH = re.compile(rf"{DATA_DIR}/[^/.][^/]*/[\w.-]+-\d{{5}}-of-\d{{5}}\.parquet")
"""`data/<config>/<split>-00000-of-00001.parquet`: the only shard names `build_repo` writes."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests(folder: Path, paths: Iterable[str]) -> dict[str, str]:
    """{path: sha256} of `paths` (relative to `folder`), sorted: the `files` entry of the manifest."""
    return {path: sha256_of(folder / path) for path in sorted(paths)}


def read_release(folder: str | os.PathLike) -> dict[str, Any]:
    """The `seke_release.json` of a folder written by `build_repo` (kind, mode, configs, build_info, files)."""
    path = Path(folder) / RELEASE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a release folder: {RELEASE_FILE} is missing. Write one with "
            "seke_hf.publish.build_repo(datasets_by_config, out_dir)."
        )
    return json.loads(path.read_text("utf-8"))


def is_release_path(path: str) -> bool:
    """Whether `path` is a name `build_repo` writes (card, licence or a data shard)."""
    return path in (CARD_FILE, LICENSE_FILE) or SHARD_PATH.fullmatch(path) is not None


def expected_files(folder: str | os.PathLike) -> dict[str, str]:
    """The files of the release in `folder` ({path: sha256} as `build_repo` recorded them, the manifest itself
    aside), after checking that the folder holds exactly those: no other file, none missing, no symbolic link.
    Whether their content is still what was recorded is checked on upload (`push` compares the hashes)."""
    folder = Path(folder)
    release = read_release(folder)
    expected = release.get(FILES_KEY)
    if not isinstance(expected, dict) or not expected:
        raise UnsafeReleaseError(
            f"{folder / RELEASE_FILE} lists no files (it was written by an older seke-hf, or by hand): rebuild the "
            "release with seke_hf.publish.build_repo, which records every file it writes, so that push uploads "
            "exactly those."
        )
    present, links = _walk(folder)
    problems = []
    if links:
        problems.append(f"symbolic links (a release holds only regular files): {_names(links)}")
    strangers = sorted(p for p in present if p not in expected and p != RELEASE_FILE)
    if strangers:
        problems.append(f"files build_repo did not write: {_names(strangers)}")
    unknown = sorted(p for p in expected if not is_release_path(p))
    if unknown:
        problems.append(f"{RELEASE_FILE} lists files build_repo never writes: {_names(unknown)}")
    missing = sorted(p for p in expected if p not in present and p not in links)
    if missing:
        problems.append(f"files missing since build_repo wrote them: {_names(missing)}")
    if problems:
        raise UnsafeReleaseError(
            f"refusing to push {folder}: a release folder must hold exactly what build_repo wrote, and this one has "
            + "; ".join(problems)
            + ". Remove what does not belong, or rebuild the release into a new folder."
        )
    return dict(expected)


def _walk(folder: Path) -> tuple[set[str], list[str]]:
    """Regular files (relative paths) and symbolic links under `folder`, without following links."""
    files, links = set(), []
    for parent, dirs, names in os.walk(folder, followlinks=False):
        for name in [*dirs, *names]:
            path = Path(parent, name)
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links.append(relative)
            elif name in names:
                files.add(relative)
    return files, sorted(links)


def _names(paths: list[str], limit: int = 10) -> str:
    return ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
