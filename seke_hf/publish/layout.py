"""Write a FEID/FEAB release as the Hub lays it out, in a local folder (the files are named in `files.py`): what
`load_dataset(folder, config)` reads is exactly what `push` uploads.

Shards follow `Dataset.push_to_hub`'s naming and embed image bytes (`embed_table_storage`), so the Parquet files
need neither this package nor the original image files to be read. The `all` config points at the per-corpus
shards when it holds the same rows, so the images are stored once. Writing is deterministic: the same datasets give
byte-identical files, which is what makes a re-push upload nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import datasets
import pyarrow as pa
from datasets.table import embed_table_storage
from datasets.utils.py_utils import convert_file_size_to_int

from seke_hf.columns import IMAGE_COLUMNS, file_columns, image_columns
from seke_hf.corpora import CORPORA
from seke_hf.publish.card import public_build_info, render_card, render_license
from seke_hf.publish.content import file_findings
from seke_hf.publish.files import CARD_FILE, DATA_DIR, LICENSE_FILE, RELEASE_FILE, RELEASE_FILES, ConfigLayout
from seke_hf.publish.manifest import FILES_KEY, digests
from seke_hf.release import export_annotations

logger = logging.getLogger("seke_hf.publish")

Kind = Literal["feid", "feab"]
Mode = Literal["full", "annotations"]

DEFAULT_CONFIG = "all"
"""The config `load_dataset("org/feid")` opens: every source corpus together."""
DEFAULT_SPLIT: dict[str, str] = {"feid": "train", "feab": "test"}
"""The split a bare Dataset becomes: FEID is the paper's training set, FEAB its benchmark (test) set."""
SPLIT_ORDER = ("train", "validation", "test")
MAX_SHARD_SIZE = "500MB"
"""Largest Parquet shard, as `push_to_hub`'s default (estimated from the Arrow size, images included)."""


def build_repo(
    datasets_by_config: Mapping[str, datasets.DatasetDict | datasets.Dataset],
    out_dir: str | os.PathLike,
    kind: Kind = "feid",
    mode: Mode = "full",
    build_info: Mapping[str, Any] | None = None,
    *,
    max_shard_size: int | str = MAX_SHARD_SIZE,
    repo_id: str | None = None,
) -> Path:
    """Write the release folder for `datasets_by_config` ({"all": ..., "rafdb": ..., ...}) and return its path.

    `mode="annotations"` drops every image column (`seke_hf.release.export_annotations`): the corpora's licences
    forbid redistributing their images, and `attach_images` restores them from the user's own copies. Without an
    `"all"` config, one is made of the others. `repo_id` only fills the card's code examples. An existing release
    in `out_dir` is replaced; any other non-empty folder is refused rather than overwritten.
    """
    if kind not in DEFAULT_SPLIT:
        raise ValueError(f"kind must be 'feid' or 'feab', not {kind!r}")
    if mode not in ("full", "annotations"):
        raise ValueError(f"mode must be 'full' or 'annotations', not {mode!r}")
    configs = _as_dataset_dicts(datasets_by_config, kind)
    if mode == "annotations":
        configs = {name: export_annotations(dd) for name, dd in configs.items()}
    _check_file_columns(configs)
    out = _prepare_folder(Path(out_dir))
    max_bytes = convert_file_size_to_int(max_shard_size)

    parts = {name: dd for name, dd in configs.items() if name != DEFAULT_CONFIG}
    layouts = {name: _write_config(out, name, dd, max_bytes) for name, dd in parts.items()}
    order = _union_order(configs.get(DEFAULT_CONFIG), parts) if parts else None
    if order is not None:
        layouts[DEFAULT_CONFIG] = _union_layout(layouts, order)
        configs.setdefault(DEFAULT_CONFIG, _concatenate(list(parts.values())))
    else:
        layouts[DEFAULT_CONFIG] = _write_config(out, DEFAULT_CONFIG, configs[DEFAULT_CONFIG], max_bytes)
    layouts = {name: layouts[name] for name in _config_order(layouts)}

    card = render_card(configs, layouts, kind=kind, mode=mode, default_config=DEFAULT_CONFIG,
                       build_info=build_info, repo_id=repo_id)  # fmt: skip
    card.save(out / CARD_FILE)
    (out / LICENSE_FILE).write_text(render_license(configs, kind=kind, default_config=DEFAULT_CONFIG), "utf-8")
    shards = [shard for layout in layouts.values() for shard in layout.shards]
    release = {
        "kind": kind,
        "mode": mode,
        "configs": list(layouts),
        "build_info": public_build_info(build_info or {}),
        FILES_KEY: digests(out, [CARD_FILE, LICENSE_FILE, *shards]),
    }
    (out / RELEASE_FILE).write_text(json.dumps(release, indent=2, default=str) + "\n", "utf-8")
    logger.info("wrote %s release (%s) with configs %s to %s", kind.upper(), mode, ", ".join(layouts), out)
    return out


def release_has_images(folder: str | os.PathLike) -> bool:
    """Whether any file of the folder may hold images or binary data, read from the files themselves (every
    Parquet file's columns whatever its metadata says, every other file's bytes), not from their names."""
    return any(file_findings(p) for p in sorted(Path(folder).rglob("*")) if p.is_file())


def _as_dataset_dicts(
    datasets_by_config: Mapping[str, datasets.DatasetDict | datasets.Dataset], kind: str
) -> dict[str, datasets.DatasetDict]:
    if not datasets_by_config:
        raise ValueError("nothing to publish: datasets_by_config is empty")
    configs = {}
    for name, ds in datasets_by_config.items():
        if isinstance(ds, datasets.Dataset):
            ds = datasets.DatasetDict({DEFAULT_SPLIT[kind]: ds})
        if not isinstance(ds, datasets.DatasetDict):
            raise TypeError(f"config {name!r}: expected a Dataset or DatasetDict, got {type(ds).__name__}")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid config name {name!r}")
        configs[name] = datasets.DatasetDict({s: ds[s] for s in _split_order(ds)})
    return configs


def _check_file_columns(configs: Mapping[str, datasets.DatasetDict]) -> None:
    """Only the faces may carry bytes into a release: any other column that stores files (its cells may be paths,
    which writing would embed, whatever file they name) is refused before anything is written."""
    for name, dd in configs.items():
        for split, ds in dd.items():
            undeclared = [c for c in file_columns(ds.features) if c not in IMAGE_COLUMNS]
            if undeclared:
                raise ValueError(
                    f"config {name!r}, split {split!r}: column(s) {', '.join(undeclared)} store files, and only the "
                    f"faces ({', '.join(IMAGE_COLUMNS)}) may carry bytes into a release. Drop them "
                    "(ds.remove_columns) or publish annotations only (mode='annotations')."
                )


def _prepare_folder(out: Path) -> Path:
    if out.exists():
        strangers = [p.name for p in out.iterdir() if p.name not in (*RELEASE_FILES, DATA_DIR)]
        if strangers:
            raise FileExistsError(
                f"{out} holds files that are not part of a release ({', '.join(sorted(strangers)[:5])}); "
                "choose an empty or new folder"
            )
        (out / RELEASE_FILE).unlink(missing_ok=True)  # a build that stops half-way leaves no manifest to push
        shutil.rmtree(out / DATA_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_config(out: Path, name: str, dd: datasets.DatasetDict, max_bytes: int) -> ConfigLayout:
    layout = ConfigLayout(name)
    for split, ds in dd.items():
        folder = out / DATA_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        num_shards = max(1, min(len(ds), int(ds._estimate_nbytes() / max_bytes) + 1))
        embed = bool(image_columns(ds.features))
        for index in range(num_shards):
            shard = ds.shard(num_shards=num_shards, index=index, contiguous=True)
            if embed:  # the bytes of local images still stored as file paths go into the Parquet file itself
                shard = shard.with_format("arrow").map(_embed_local_files, batched=True, keep_in_memory=True)
                shard = shard.with_format(None)
            path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            shard.to_parquet(str(path))
            layout.shards.append(path.relative_to(out).as_posix())
            layout.download_size += path.stat().st_size
        layout.data_files[split] = [f"{DATA_DIR}/{name}/{split}-*.parquet"]
        layout.num_examples[split] = len(ds)
        layout.num_bytes[split] = ds.data.nbytes
        layout.features = ds.features
    return layout


def _embed_local_files(table: pa.Table) -> pa.Table:
    """`embed_table_storage` without fetching URLs: writing a release never downloads anything."""
    return embed_table_storage(table, remote_files=False)


def _union_layout(parts: Mapping[str, ConfigLayout], order: Mapping[str, list[str]]) -> ConfigLayout:
    """The `all` config as the list of its parts' shards, split by split in `order`: no byte stored twice."""
    first = next(iter(parts.values()))
    union = ConfigLayout(DEFAULT_CONFIG, features=first.features)
    for split in _split_order(order):
        for name in order[split]:
            part = parts[name]
            union.data_files.setdefault(split, []).extend(part.data_files[split])
            union.num_examples[split] = union.num_examples.get(split, 0) + part.num_examples[split]
            union.num_bytes[split] = union.num_bytes.get(split, 0) + part.num_bytes[split]
    union.download_size = sum(part.download_size for part in parts.values())
    return union


def _union_order(whole: datasets.DatasetDict | None, parts: Mapping[str, datasets.DatasetDict]) -> dict | None:
    """Per split, the parts in the order that concatenates to `whole` exactly; None if `whole` is not their union.

    Without a `whole`, the parts in their given order."""
    splits = _split_order({s for part in parts.values() for s in part})
    if whole is None:
        for split in splits:
            features = {name: part[split].features for name, part in parts.items() if split in part}
            if len({json.dumps(f.to_dict(), sort_keys=True) for f in features.values()}) > 1:
                raise ValueError(
                    f"the configs {', '.join(features)} have different columns in split {split!r}, so they cannot "
                    f"form the {DEFAULT_CONFIG!r} config; pass an {DEFAULT_CONFIG!r} config explicitly"
                )
        return {s: [name for name, part in parts.items() if s in part] for s in splits}
    if not parts or list(whole) != splits:
        return None
    order: dict[str, list[str]] = {}
    for split, ds in whole.items():
        pieces = {name: part[split] for name, part in parts.items() if split in part}
        if any(piece.features != ds.features for piece in pieces.values()):
            return None
        piece_ids = {name: _ids(piece) for name, piece in pieces.items()}
        starting_with = {ids[0]: name for name, ids in piece_ids.items() if ids}
        ids, offset, order[split] = _ids(ds), 0, []
        while offset < len(ids):
            name = starting_with.get(ids[offset])
            if name is None or ids[offset : offset + len(piece_ids[name])] != piece_ids[name]:
                return None
            order[split].append(name)
            offset += len(piece_ids[name])
        if len(order[split]) != len(starting_with):
            return None
        order[split] += [name for name, ids in piece_ids.items() if not ids]
    return order


def _ids(ds: datasets.Dataset) -> list[str]:
    return ds.select_columns(["sample_id"]).with_format("arrow")[:]["sample_id"].to_pylist()


def _concatenate(parts: list[datasets.DatasetDict]) -> datasets.DatasetDict:
    splits = _split_order({s for p in parts for s in p})
    return datasets.DatasetDict({s: datasets.concatenate_datasets([p[s] for p in parts if s in p]) for s in splits})


def _split_order(splits: Any) -> list[str]:
    return sorted(splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))


def _config_order(names: Any) -> list[str]:
    """`all` first, then the corpora in the paper's order, then any other config by name."""
    rank = {DEFAULT_CONFIG: -1, **{c: i for i, c in enumerate(CORPORA)}}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))
