"""FEID and FEAB end to end: selection, SV-UAMC annotation, instruction data, Arrow and Hub layouts, a summary.

`seke-hf build` and `seke-hf demo` are thin shells over `build_datasets`. The output folder gets:

    manifest.csv, selection.json     what was selected, and with which parameters (rebuild with manifest=)
    manifest_report.json             what each stage read, and the chosen rows left out (image missing or unreadable)
    arrow/feid, arrow/feab           both datasets, `datasets.load_from_disk`
    hub/feid, hub/feab               the Hub layout (Parquet + card), `load_dataset(folder)`; release="annotations"
                                     leaves the licensed images out
    summary.json                     counts per source and level, requests, tokens, estimated cost, rejections

FEID is written in trainer form (`messages` + `images`, the label columns beside them); FEAB keeps the unified
schema (`image` + labels) that `seke_hf.evaluate` scores against.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from seke_hf import label_counts
from seke_hf._version import __version__
from seke_hf.columns import column_values
from seke_hf.corpora import CORPORA
from seke_hf.loading_scripts.raw_files import local_path
from seke_hf.loading_scripts.remote_files import is_url, upload_folder
from seke_hf.schema import LEVELS
from seke_hf.selection import FEAB_SPLIT, FEID_SPLIT, SelectionParams
from seke_hf.urls import public_url

if TYPE_CHECKING:
    from seke_hf.annotate import SVUAMCAnnotator

logger = logging.getLogger(__name__)

KINDS = {"feid": FEID_SPLIT, "feab": FEAB_SPLIT}
"""Dataset name -> its split in the manifest."""


@dataclass
class BuildResult:
    out: Path
    datasets: dict[str, datasets.Dataset]
    """"feid" (chat form) and "feab" (unified schema), as written."""
    summary: dict[str, Any]


def build_datasets(
    corpora_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    annotator: SVUAMCAnnotator | None = None,
    sources: Iterable[str] = CORPORA,
    paths: Mapping[str, str] | None = None,
    manifest: str | os.PathLike | None = None,
    params: SelectionParams | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    style: str = "placeholder",
    release: str = "full",
    repo_id: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Select, annotate (when an annotator is given), add chat columns and write everything under `out`.

    `progress` receives one line per stage with its counts (labels read, rows selected, images read, rows
    annotated, shards written); by default they are logged.
    """
    from seke_hf import feid
    from seke_hf.instructions import to_chat
    from seke_hf.publish import build_repo

    say = progress or logger.info
    if is_url(os.fspath(out)):
        return _build_then_upload(
            str(out), corpora_root, annotator=annotator, sources=sources, paths=paths, manifest=manifest,
            params=params, limit=limit, batch_size=batch_size, style=style, release=release, repo_id=repo_id,
            seed=seed, progress=say,
        )  # fmt: skip
    out = Path(out)
    params = params or SelectionParams.from_dict({"seed": seed})
    selected = feid.build(
        corpora_root, paths=paths, sources=tuple(sources), manifest=manifest, params=params, limit=limit,
        progress=say,
    )  # fmt: skip
    built = {kind: selected.datasets[split] for kind, split in KINDS.items()}
    out.mkdir(parents=True, exist_ok=True)
    feid.write_manifest(selected.manifest, out / "manifest.csv")
    (out / "selection.json").write_text(json.dumps(params.to_dict(), indent=2, sort_keys=True) + "\n")
    report = selected.report.to_dict()
    (out / "manifest_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    usage: dict[str, Any] = {}
    if annotator is not None:
        built, usage = annotate_all(built, annotator, batch_size=batch_size)
        say(f"rows annotated: {sum(len(ds) for ds in built.values())} with SV-UAMC ({annotator.model}), "
            f"{usage['requests']} requests ({usage['answered_from_cache']} answers from cache)")  # fmt: skip
    else:
        say("rows annotated: none (--no-annotate: human labels only)")

    released = {"feid": to_chat(built["feid"], seed=seed, style=style), "feab": built["feab"]}
    build_info = {
        "seke_hf": __version__,
        **({"model": annotator.model, "svuamc": svuamc_settings(annotator)} if annotator is not None else {}),
        **usage,
        "selection": "manifest file" if manifest else params.to_dict(),
    }
    for kind, ds in released.items():
        datasets.DatasetDict({KINDS[kind]: ds}).save_to_disk(str(out / "arrow" / kind))
        present = set(column_values(ds, "source"))
        by_source = {
            source: ds.filter(lambda s, want=source: s == want, input_columns="source")
            for source in CORPORA
            if source in present
        }
        build_repo(by_source, out / "hub" / kind, kind=kind, mode=release, build_info=build_info, repo_id=repo_id)
    shards = sorted((out / "hub").rglob("*.parquet"))
    say(f"shards written: {len(shards)} Parquet files ({release} release) under {out / 'hub'}, Arrow under "
        f"{out / 'arrow'}")  # fmt: skip
    summary = summarize(built, released, usage, report)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return BuildResult(out, released, summary)


def _build_then_upload(url: str, corpora_root: str | os.PathLike, **kwargs: Any) -> BuildResult:
    """`build_datasets` into a local staging folder, then one upload of the whole tree to `url` (any fsspec URL).

    The Arrow and Parquet writers want a local file system; staging needs local disk for one output tree, and the
    upload happens only once the build succeeded, so `url` never holds half a build.
    """
    say = kwargs.pop("progress")
    with tempfile.TemporaryDirectory(prefix="seke-build-") as staging:
        shown = public_url(url)
        result = build_datasets(
            corpora_root, staging, progress=lambda line: say(line.replace(staging, shown)), **kwargs
        )
        upload_folder(staging, url)
    say(f"uploaded: the build tree to {shown}")
    return dataclasses.replace(result, out=local_path(url))


def svuamc_settings(annotator: SVUAMCAnnotator) -> dict[str, Any]:
    """What the cards report of how labels were generated."""
    return {"temperature": annotator.temperature, **dataclasses.asdict(annotator.config)}


def annotate_all(
    built: Mapping[str, datasets.Dataset], annotator: SVUAMCAnnotator, batch_size: int = 64
) -> tuple[dict[str, datasets.Dataset], dict[str, Any]]:
    """Map the annotator over each dataset; returns the annotated datasets and the run's usage and cost."""
    annotated = {}
    try:
        for kind, ds in built.items():
            annotated[kind] = annotator.annotate(ds, batch_size=batch_size, desc=f"SV-UAMC {kind}")
        tally, prices = annotator.backend.tally, annotator.backend.prices
        usage = {
            "requests": tally.requests,
            "tokens": {
                "prompt": tally.usage.prompt_tokens,
                "completion": tally.usage.completion_tokens,
                "cached": tally.usage.cached_tokens,
            },
            "estimated_cost": None if (cost := tally.cost(prices)) is None else round(cost, 4),
            "prices": prices.describe(),
            "answered_from_cache": tally.cache_hits,
            "retries": tally.retries,
            "failed_requests": tally.failures,
        }
    finally:
        annotator.close()
    return annotated, usage


def summarize(
    built: dict[str, datasets.Dataset],
    released: dict[str, datasets.Dataset],
    usage: dict[str, Any],
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counts per source and level, usage, a few rejected examples with their reasons, and the rows left out."""
    summary: dict[str, Any] = {"datasets": {}, "usage": usage, "images": _image_stage(report or {})}
    for kind, ds in built.items():
        labels = ds.remove_columns([c for c in ("image",) if c in ds.column_names]).with_format("arrow")[:]
        entry = label_counts.label_summary(labels)
        entry["released_rows"] = len(released[kind])
        summary["datasets"][kind] = entry
    return summary


def _image_stage(report: dict[str, Any]) -> dict[str, Any]:
    skipped = report.get("skipped", {})
    return {
        "read": report.get("images_read", 0),
        "left_out": {reason: len(ids) for reason, ids in skipped.items()},
        "left_out_examples": {reason: ids[:5] for reason, ids in skipped.items()},
    }


def _level_cell(level: str, labelled: int, origin: dict[str, int] | None) -> str:
    """`expression 140 human` or `aus 140: 100 human + 40 generated` (without provenance: the count alone)."""
    parts = [f"{(origin or {})[kind]} {kind}" for kind in ("human", "generated") if (origin or {}).get(kind)]
    if not parts:
        return f"{level} {labelled}"
    return f"{level} {parts[0]}" if len(parts) == 1 else f"{level} {labelled}: {' + '.join(parts)}"


def render_summary(summary: dict[str, Any], out: Path) -> str:
    lines = [f"seke-hf build: done, written to {out}"]
    for kind, entry in summary["datasets"].items():
        sources = ", ".join(f"{s} {n}" for s, n in entry["per_source"].items())
        lines.append(f"  {kind.upper()}: {entry['rows']} rows ({sources})")
        origins = entry.get("provenance_per_source", {})
        for source, levels in entry["levels"].items():
            cells = [_level_cell(level, levels.get(level, 0), origins.get(source, {}).get(level)) for level in LEVELS]
            lines.append(f"    {source:<9} " + " | ".join(cells))
        if "status" in entry:
            lines.append("    status: " + ", ".join(f"{k} {v}" for k, v in sorted(entry["status"].items())))
            for example in entry["rejected_examples"][:3]:
                lines.append(f"    {example.get('status', 'rejected')} {example['sample_id']}: {example['reason']}")
        if entry["released_rows"] != entry["rows"]:
            lines.append(
                f"    {entry['rows'] - entry['released_rows']} rows without any label left out of the chat data"
            )
    left_out = summary.get("images", {}).get("left_out", {})
    if left_out:
        examples = summary["images"]["left_out_examples"]
        lines.append("  left out (image missing or unreadable; the selection took other rows): " + "; ".join(
            f"{n} {reason} (e.g. {examples[reason][0]})" for reason, n in left_out.items()))  # fmt: skip
    usage = summary["usage"]
    if usage and usage["requests"] == usage["answered_from_cache"] == 0:
        lines.append(
            "  model: no request sent: nothing to ask, or datasets returned the annotated rows from its cache of an "
            "identical earlier run"
        )
    elif usage:
        tokens = usage["tokens"]
        lines.append(
            f"  model: {usage['requests']} requests sent ({usage.get('retries', 0)} retries, "
            f"{usage.get('failed_requests', 0)} failed; {usage['answered_from_cache']} answers from cache), tokens "
            f"{tokens['prompt']} prompt / {tokens['completion']} completion, " + _cost_line(usage)
        )
    return "\n".join(lines)


def _cost_line(usage: Mapping[str, Any]) -> str:
    """ "estimated cost $3.92 at gpt-4o prices (...)", or "not priced" when the prices are unknown."""
    cost = usage.get("estimated_cost")
    if cost is None:
        return "not priced (give prices with --prices or --price-input/--price-output)"
    return f"estimated cost ${cost:,.2f}" + (f" at {usage['prices']}" if usage.get("prices") else "")
