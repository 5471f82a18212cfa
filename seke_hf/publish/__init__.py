"""Publish FEID/FEAB: write the Hub layout locally (`build_repo`), then push it as one atomic commit (`push`).

`load_dataset(out_dir, config)` on the folder previews exactly what `push` uploads; after the push,
`load_dataset("org/feid", config)` reads it with plain `datasets`, no plugin installed.
"""

from __future__ import annotations

from seke_hf.publish.errors import PublishError, UnsafeReleaseError
from seke_hf.publish.layout import DEFAULT_CONFIG, build_repo, release_has_images
from seke_hf.publish.manifest import read_release
from seke_hf.publish.push import push

__all__ = [
    "DEFAULT_CONFIG",
    "PublishError",
    "UnsafeReleaseError",
    "build_repo",
    "push",
    "read_release",
    "release_has_images",
]
