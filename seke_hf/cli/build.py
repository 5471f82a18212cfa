"""`seke-hf build`: FEID and FEAB from your corpora, end to end: selection, SV-UAMC annotation, instruction data.

    seke-hf build --corpora-root /data/faces --out feid_build/ --model gpt-4o
    seke-hf build --corpora-root /data/faces --out dry/ --base-url http://127.0.0.1:8000/v1 --limit 20
    seke-hf build --corpora-root /data/faces --out feid_build/ --manifest feid_build_v1/manifest.csv --no-annotate

ROOT holds the corpora under their usual folder names (CK+, RAF-DB, AffectNet, DISFA, BP4D, Aff-Wild2); those
found are used, the others named in a warning. The output folder gets:

    manifest.csv, selection.json     what was selected, and with which parameters (rebuild with --manifest)
    arrow/feid, arrow/feab           both datasets, `datasets.load_from_disk`
    hub/feid, hub/feab               the Hub layout (Parquet + card), `load_dataset(folder)`; `--release annotations`
                                     leaves the licensed images out
    summary.json                     counts per source and level, requests, tokens, estimated cost, rejections

FEID is written in trainer form (`messages` + `images`, the label columns beside them); FEAB keeps the unified
schema (`image` + labels) that `seke-hf evaluate` scores against. The API key comes from OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from seke_hf import __version__
from seke_hf.cli import CLIError
from seke_hf.corpora import CORPORA
from seke_hf.release import column_values
from seke_hf.schema import LEVELS, annotated_levels
from seke_hf.selection import FEAB, FEID, SelectionParams

logger = logging.getLogger(__name__)

KINDS = {"feid": FEID, "feab": FEAB}
"""Dataset name -> its split in the manifest."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build",
        help="build FEID and FEAB from the corpora under a folder (selection, annotation, instruction data)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--corpora-root", required=True, help="folder holding CK+/, RAF-DB/, AffectNet/, DISFA/, ...")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--corpus-path", action="append", default=[], metavar="NAME=DIR",
                   help="explicit folder of one corpus, e.g. rafdb=/data/RAF (repeatable)")  # fmt: skip
    p.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of corpora to use")
    p.add_argument("--manifest", default=None, help="rebuild exactly this manifest CSV instead of selecting")
    p.add_argument("--seed", type=int, default=0, help="selection and phrasing seed")
    p.add_argument("--selection", default=None, help='JSON overrides of the selection, e.g. \'{"targets": '
                   '{"rafdb": [100, 20]}}\'')  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="only the first N rows of each dataset (dry runs)")
    p.add_argument("--no-annotate", dest="annotate", action="store_false", help="skip SV-UAMC (human labels only)")
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI)")
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--max-samples", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-concurrency", type=int, default=32)
    p.add_argument(
        "--cache-dir", default=None, help="request cache folder (default: SEKE_HF_CACHE or ~/.cache/seke_hf)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="rows annotated concurrently per map batch")
    p.add_argument("--style", choices=("placeholder", "typed"), default="placeholder",
                   help="chat content: <image> placeholders (LLaMA-Factory, ms-swift) or TRL typed blocks")  # fmt: skip
    p.add_argument("--release", choices=("full", "annotations"), default="full",
                   help="hub/ layout with images (local use) or annotations only (publishable)")  # fmt: skip
    p.add_argument("--repo-id", default=None, help="Hub id shown in the cards' examples, e.g. org/feid")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seke_hf import feid
    from seke_hf.instructions import to_chat
    from seke_hf.publish import build_repo

    if not args.progress:
        datasets.disable_progress_bars()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the progress
    out = Path(args.out)
    sources = tuple(s.strip() for s in args.corpora.split(",") if s.strip())
    unknown = set(sources) - set(CORPORA)
    if unknown:
        raise CLIError(f"unknown corpora {sorted(unknown)}; expected some of {', '.join(CORPORA)}")
    params = _selection_params(args)

    logger.info("[1/4] selecting FEID/FEAB from %s", args.corpora_root)
    splits, manifest = feid.build(
        args.corpora_root, paths=_corpus_paths(args.corpus_path), sources=sources, manifest=args.manifest, params=params
    )
    built = {kind: splits[split] for kind, split in KINDS.items()}
    if args.limit is not None:
        built = {kind: ds.select(_spread(column_values(ds, "source"), args.limit)) for kind, ds in built.items()}
        kept = set().union(*(column_values(ds, "sample_id") for ds in built.values()))
        manifest = [e for e in manifest if e.sample_id in kept]
    out.mkdir(parents=True, exist_ok=True)
    feid.write_manifest(manifest, out / "manifest.csv")
    (out / "selection.json").write_text(json.dumps(params.to_dict(), indent=2, sort_keys=True) + "\n")

    usage: dict[str, Any] = {}
    if args.annotate:
        logger.info("[2/4] completing missing labels with SV-UAMC (%s)", args.model)
        built, usage = _annotate(built, args)
    else:
        logger.info("[2/4] annotation skipped (--no-annotate): human labels only")

    logger.info("[3/4] writing instruction conversations (%s style)", args.style)
    released = {"feid": to_chat(built["feid"], seed=args.seed, style=args.style), "feab": built["feab"]}

    logger.info("[4/4] writing %s", out)
    build_info = {
        "seke_hf": __version__,
        **({"model": args.model, "svuamc": _svuamc_settings(args)} if args.annotate else {}),
        **usage,
        "selection": "manifest file" if args.manifest else params.to_dict(),
    }
    for kind, ds in released.items():
        datasets.DatasetDict({KINDS[kind]: ds}).save_to_disk(str(out / "arrow" / kind))
        by_source = {
            source: ds.filter(lambda s, want=source: s == want, input_columns="source")
            for source in CORPORA
            if source in set(column_values(ds, "source"))
        }
        build_repo(by_source, out / "hub" / kind, kind=kind, mode=args.release, build_info=build_info,
                   repo_id=args.repo_id)  # fmt: skip
    summary = _summary(built, released, usage)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(_render(summary, out))
    return 0


def _spread(sources: list[str], limit: int) -> list[int]:
    """`limit` row indices taken in turn from each source, so a dry run sees every corpus."""
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_source.setdefault(source, []).append(i)
    queues = list(by_source.values())
    picked = [
        queue[depth] for depth in range(max(map(len, queues), default=0)) for queue in queues if depth < len(queue)
    ]
    return sorted(picked[:limit])


def _selection_params(args: argparse.Namespace) -> SelectionParams:
    try:
        overrides = json.loads(args.selection) if args.selection else {}
    except json.JSONDecodeError as e:
        raise CLIError(f"--selection is not valid JSON: {e}") from None
    return SelectionParams.from_dict({"seed": args.seed, **overrides})


def _corpus_paths(items: list[str]) -> dict[str, str]:
    paths = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise CLIError(f"--corpus-path takes NAME=DIR (e.g. rafdb=/data/RAF), got {item!r}")
        paths[name.strip()] = folder.strip()
    return paths


def _svuamc_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"min_samples": args.min_samples, "max_samples": args.max_samples, "temperature": args.temperature}


def _annotate(
    built: dict[str, datasets.Dataset], args: argparse.Namespace
) -> tuple[dict[str, datasets.Dataset], dict[str, Any]]:
    from seke_hf.annotate import SVUAMCAnnotator

    annotator = SVUAMCAnnotator(
        model=args.model,
        base_url=args.base_url,
        min_samples=args.min_samples,
        max_samples=args.max_samples,
        temperature=args.temperature,
        max_concurrency=args.max_concurrency,
        cache_dir=args.cache_dir,
        progress=args.progress,
    )
    annotated = {}
    try:
        for kind, ds in built.items():
            # Undecoded images: the annotator reads the bytes, and the faces are written back untouched.
            raw = ds.cast_column("image", datasets.Image(decode=False))
            annotated[kind] = raw.map(
                annotator,
                batched=True,
                batch_size=args.batch_size,
                features=annotator.output_features(raw.features),
                desc=f"SV-UAMC {kind}",
            ).cast_column("image", datasets.Image())
        tally, prices = annotator.backend.tally, annotator.backend.prices
        usage = {
            "requests": tally.requests,
            "tokens": {
                "prompt": tally.usage.prompt_tokens,
                "completion": tally.usage.completion_tokens,
                "cached": tally.usage.cached_tokens,
            },
            "estimated_cost": round(tally.cost(prices), 4),
            "answered_from_cache": tally.cache_hits,
        }
    finally:
        annotator.close()
    return annotated, usage


def _summary(
    built: dict[str, datasets.Dataset], released: dict[str, datasets.Dataset], usage: dict[str, Any]
) -> dict[str, Any]:
    """Counts per source and level, usage, and a few rejected examples with their reasons."""
    summary: dict[str, Any] = {"datasets": {}, "usage": usage}
    for kind, ds in built.items():
        labels = ds.remove_columns([c for c in ("image",) if c in ds.column_names]).to_list()
        per_source = Counter(row["source"] for row in labels)
        levels = {
            source: dict(Counter(level for row in labels if row["source"] == source for level in annotated_levels(row)))
            for source in per_source
        }
        entry: dict[str, Any] = {"rows": len(ds), "per_source": dict(per_source), "levels": levels}
        if "status" in ds.column_names:
            entry["status"] = dict(Counter(row["status"] for row in labels))
            entry["provenance"] = {
                level: dict(Counter((row["provenance"] or {}).get(level) for row in labels)) for level in LEVELS
            }
            entry["rejected_examples"] = [
                {"sample_id": row["sample_id"], "reason": row["status_reason"]}
                for row in labels
                if row["status"] in ("rejected", "failed")
            ][:10]
        entry["released_rows"] = len(released[kind])
        summary["datasets"][kind] = entry
    return summary


def _render(summary: dict[str, Any], out: Path) -> str:
    lines = [f"seke-hf build: done, written to {out}"]
    for kind, entry in summary["datasets"].items():
        sources = ", ".join(f"{s} {n}" for s, n in entry["per_source"].items())
        lines.append(f"  {kind.upper()}: {entry['rows']} rows ({sources})")
        for source, levels in entry["levels"].items():
            lines.append(f"    {source:<9} " + ", ".join(f"{level} {levels.get(level, 0)}" for level in LEVELS))
        if "status" in entry:
            lines.append("    status: " + ", ".join(f"{k} {v}" for k, v in sorted(entry["status"].items())))
            for example in entry["rejected_examples"][:3]:
                lines.append(f"    rejected {example['sample_id']}: {example['reason']}")
        if entry["released_rows"] != entry["rows"]:
            lines.append(
                f"    {entry['rows'] - entry['released_rows']} rows without any label left out of the chat data"
            )
    usage = summary["usage"]
    if usage:
        tokens = usage["tokens"]
        lines.append(
            f"  model: {usage['requests']} requests ({usage['answered_from_cache']} answers from cache), tokens "
            f"{tokens['prompt']} prompt / {tokens['completion']} completion, "
            f"estimated cost ${usage['estimated_cost']:.2f}"
        )
    return "\n".join(lines)
