"""SV-UAMC annotation on Ray Data: the same annotator, one copy per Ray actor, rows streamed through in batches.

    import ray, seke_hf
    from seke_hf.scale import annotate_with_ray, write_shards

    ray.init(address="auto")                                   # or ray.init() for a local cluster
    annotator = seke_hf.SVUAMCAnnotator(model="Qwen2.5-VL-72B", base_url="http://vllm:8000/v1", cache_dir=...)
    annotated = annotate_with_ray(ds, annotator, workers=8)     # a lazy ray.data.Dataset
    write_shards(annotated, "out/", split="train")              # out/data/train-00000-of-000NN.parquet
    datasets.load_dataset("out/")                               # the same rows as ds.map(annotator, ...)

Why Ray Data and not a scheduler of our own: it streams blocks to a pool of actors, restarts an actor that dies
and re-runs its batch (`max_restarts=-1`, `max_task_retries=-1`), and writes shards as batches finish. What Ray
cannot know is which requests a dead actor already paid for: the annotator's request cache does, so a re-run
batch reads its answered requests back and sends only the ones never answered. All actors must therefore see one
cache: the SQLite cache on a shared disk for one machine, a shared (object-store) cache across machines.

Each actor runs two batches at once (threaded actor), so while one batch waits for its slowest row the next one's
requests keep the annotator's `max_concurrency` slots busy, as `annotator.prefetch` does in a single process.
Rows keep their order (`preserve_order`), and the output has exactly the columns, types and values of
`annotator.annotate(ds)`: the Arrow schema of `annotator.output_features(ds.features)`, whose metadata carries the
`datasets` features (ClassLabel, Image) into the Parquet shards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import datasets
import fsspec
import pyarrow as pa

from seke_hf.scale.extras import require

if TYPE_CHECKING:
    import ray.data

    from seke_hf.annotate import SVUAMCAnnotator

BLOCK_BYTES = 64 * 2**20
"""Target size of the blocks a `datasets.Dataset` is cut into (Ray's advice: tens to a few hundred MB)."""

CALLS_PER_ACTOR = 2
"""Batches an actor annotates at once: one finishing its slowest rows while the next fills the request slots."""

_SHARD = re.compile(r"_(\d+)(?:-(\d+))?\.parquet$")
"""Ray's shard names: `{uuid}_{task index}-{file of the task}.parquet`; tasks are numbered in input order."""


class AnnotateBatches:
    """The Ray Data map function: one annotator per actor, Arrow batches in and out in the output schema."""

    def __init__(self, annotator: SVUAMCAnnotator, schema: pa.Schema) -> None:
        self.annotator = annotator  # unpickled in the actor: its client, loop and cache open on first use
        self.schema = schema
        annotator.backend  # noqa: B018  (created now, before two batches run at once and both would create one)

    def __call__(self, table: pa.Table) -> pa.Table:
        generated = self.annotator(table.to_pydict())
        columns: dict[str, pa.Array] = {name: table.column(name) for name in table.column_names}
        for name, values in generated.items():
            columns[name] = pa.array(values, type=self.schema.field(name).type)
        return pa.table(
            [columns[name].cast(field.type) for name, field in zip(self.schema.names, self.schema, strict=True)],
            schema=self.schema,
        )


def annotate_with_ray(
    data: datasets.Dataset | ray.data.Dataset,
    annotator: SVUAMCAnnotator,
    *,
    workers: int = 2,
    batch_size: int = 128,
    features: datasets.Features | None = None,
    num_cpus: float = 1.0,
) -> ray.data.Dataset:
    """`annotator` mapped over `data` by `workers` Ray actors: a lazy `ray.data.Dataset` with the output columns.

    `data` is a `datasets.Dataset` (copied into Ray's object store: fine up to a few million rows with images of a
    few kB) or a `ray.data.Dataset`, e.g. `ray.data.read_parquet("s3://lab/faces/data/")` for anything larger, read
    by the cluster rather than this process. Its `features` come from the Dataset, or from the `datasets` metadata
    of the Parquet schema, or must be given. Ray must be initialised (`ray.init(...)`); one is started locally if
    not. Use batches of a few times `max_concurrency` rows, as with `Dataset.map`.
    """
    ray = require("ray", "annotation on Ray")
    require("ray.data", "annotation on Ray")
    if isinstance(data, datasets.Dataset):
        features = features or data.features
        # Not ray.data.from_huggingface: it first tries to re-load the dataset by its name and to reach huggingface.co
        # for Parquet files; its fallback is this same Arrow copy.
        data = ray.data.from_arrow(data.with_format("arrow")[:], override_num_blocks=_blocks(data, workers, batch_size))
    elif features is None:
        features = datasets.Features.from_arrow_schema(_arrow_schema(data))
    schema = annotator.output_features(features).arrow_schema
    out = data.map_batches(
        AnnotateBatches,
        fn_constructor_args=(annotator, schema),
        batch_size=batch_size,
        batch_format="pyarrow",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(
            size=workers, max_concurrent_calls_per_actor=CALLS_PER_ACTOR, enable_true_multi_threading=True
        ),
        num_cpus=num_cpus,
    )
    out.context.execution_options.preserve_order = True
    return out


def write_shards(
    annotated: ray.data.Dataset,
    out: str,
    *,
    split: str = "train",
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write `annotated` as `out/data/{split}-NNNNN-of-NNNNN.parquet` (the Hub layout `load_dataset(out)` reads).

    `out` is a local folder or an fsspec URL. Ray writes one file per batch task into a staging folder; the shards
    are then renamed in row order, so reading them in name order gives the rows in input order. Returns their URLs.
    """
    fs, root = fsspec.core.url_to_fs(out, **(storage_options or {}))
    root = root.rstrip("/")
    staging = f"{root}/.staging-{split}"
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
    fs.makedirs(staging, exist_ok=True)
    annotated.write_parquet(staging, filesystem=_arrow_filesystem(fs))
    fs.invalidate_cache()  # the shards were written by other processes
    parts = sorted(
        (p for p in fs.ls(staging, detail=False) if _SHARD.search(p)),
        key=lambda p: tuple(int(g or 0) for g in _SHARD.search(p).groups()),
    )
    fs.makedirs(f"{root}/data", exist_ok=True)
    for old in fs.glob(f"{root}/data/{split}-*.parquet"):
        fs.rm(old)
    shards = []
    for i, part in enumerate(parts):
        shard = f"{root}/data/{split}-{i:05d}-of-{len(parts):05d}.parquet"
        fs.mv(part, shard)
        shards.append(fs.unstrip_protocol(shard))
    fs.invalidate_cache()
    if fs.exists(staging):  # a folder on a file system; nothing left on an object store
        fs.rm(staging, recursive=True)
    return shards


def read_shards(shards: list[str], columns: list[str] | None = None) -> datasets.Dataset:
    """Shards written by `write_shards` (or any Parquet files) as one in-memory Dataset, e.g. a few columns for a
    report; `datasets.load_dataset(out)` is the usual way to read the whole output."""
    import pyarrow.parquet as pq

    if not shards:
        raise ValueError("no shards to read")
    fs, _, paths = fsspec.core.get_fs_token_paths(shards)
    arrow_fs = _arrow_filesystem(fs)
    return datasets.Dataset(pa.concat_tables(pq.read_table(p, columns=columns, filesystem=arrow_fs) for p in paths))


def connect(address: str | None = None, **options: Any) -> None:
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to), or start a local one (None);
    nothing if this process is already connected."""
    ray = require("ray", "annotation on Ray")
    if not ray.is_initialized():
        ray.init(address=address, **options)


def _arrow_filesystem(fs: fsspec.AbstractFileSystem) -> Any:
    """The fsspec filesystem as a pyarrow one, so Ray writes with our credentials and endpoint settings."""
    from pyarrow.fs import FSSpecHandler, LocalFileSystem, PyFileSystem

    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return LocalFileSystem()
    return PyFileSystem(FSSpecHandler(fs))


def _blocks(data: datasets.Dataset, workers: int, batch_size: int) -> int:
    """Enough blocks for every actor's concurrent calls, none much above BLOCK_BYTES, none smaller than a batch."""
    wanted = max(workers * CALLS_PER_ACTOR, math.ceil(data.data.nbytes / BLOCK_BYTES))
    return max(1, min(wanted, len(data) // max(batch_size, 1)))


def _arrow_schema(data: ray.data.Dataset) -> pa.Schema:
    schema = data.schema()
    return getattr(schema, "base_schema", schema)
