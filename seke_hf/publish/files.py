"""What a release folder holds, by name: the files `build_repo` writes and where each config's shards live.

```
README.md                                   dataset card (YAML: configs, dataset_info, licence, gating)
LICENSE                                     the terms of the release and of each source corpus
seke_release.json                           kind, mode, build info, and every file above with its sha256
data/<config>/<split>-00000-of-00002.parquet
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets

DATA_DIR = "data"
CARD_FILE = "README.md"
LICENSE_FILE = "LICENSE"
RELEASE_FILE = "seke_release.json"
RELEASE_FILES = (CARD_FILE, LICENSE_FILE, RELEASE_FILE)
"""What a release folder holds besides `data/`: anything else means the folder is not a release."""


@dataclass
class ConfigLayout:
    """Where one config's splits live: data_files patterns (relative to the release folder) and split info."""

    name: str
    data_files: dict[str, list[str]] = field(default_factory=dict)
    features: datasets.Features | None = None
    num_examples: dict[str, int] = field(default_factory=dict)
    num_bytes: dict[str, int] = field(default_factory=dict)
    download_size: int = 0
    shards: list[str] = field(default_factory=list)
    """The Parquet files written for this config (relative paths); empty when it reuses other configs' shards."""
