"""The dataset card of a FEID/FEAB release: metadata and statistics computed from the data, rendered through
`huggingface_hub.DatasetCard.from_template` with the Jinja templates of `seke_hf.cards`.

Everything in the card is read from the rows (counts, label distributions, provenance, uncertainty, rejections,
schema) or from `build_info` (model, SV-UAMC settings, requests, cost); columns a release lacks are skipped, never
guessed. Corpus names, licences and citations come from `cards/corpora.yaml`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import datasets
import jinja2
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from seke_hf import label_counts
from seke_hf.columns import image_columns
from seke_hf.publish.files import ConfigLayout
from seke_hf.schema import AUS, EXPRESSIONS, LEVELS, NOT_ANNOTATED
from seke_hf.urls import public_urls_in

CARDS_PACKAGE = "seke_hf.cards"
CARD_TEMPLATE = "dataset_card.md.j2"
LICENSE_TEMPLATE = "LICENSE.j2"
LICENSE_NAME = "seke-source-corpora"
"""`license_name` of the card: the release's own terms (LICENSE), which defer to each corpus's agreement."""

PRETTY_NAMES = {"feid": "FEID: Facial Emotion Instruction Dataset", "feab": "FEAB: Facial Emotion Analysis Benchmark"}
TASK_CATEGORIES = ["image-classification", "image-text-to-text", "visual-question-answering"]
TAGS = ["facial-expression-recognition", "emotion-recognition", "affective-computing", "action-units",
        "valence-arousal", "facs", "vision-language-model", "seke"]  # fmt: skip
SIZE_CATEGORIES = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                   (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"))  # fmt: skip
"""The Hub's `size_categories` values, by upper bound."""
SECRET_KEY = re.compile(r"(^|_)(api_?key|key|secret|password|auth\w*|token)$", re.IGNORECASE)
"""build_info keys never rendered: credentials have no place in a card (a count of `tokens` is fine)."""
SECRET_VALUE = re.compile(r"^(hf_|sk-|Bearer )", re.IGNORECASE)


@functools.cache
def cards_text(name: str) -> str:
    """A file shipped in `seke_hf.cards` (templates, corpora.yaml, columns.yaml)."""
    return importlib.resources.files(CARDS_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def corpora_metadata() -> dict[str, Any]:
    """`cards/corpora.yaml`: the paper, and per source corpus its name, licence, links and BibTeX."""
    return yaml.safe_load(cards_text("corpora.yaml"))


def render_card(
    configs: Mapping[str, datasets.DatasetDict],
    layouts: Mapping[str, ConfigLayout],
    *,
    kind: str,
    mode: str,
    default_config: str,
    build_info: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> DatasetCard:
    """The README.md of a release. `configs[default_config]` gives the statistics; `layouts` the files and sizes."""
    whole = configs[default_config]
    corpora = _corpora(_sources(whole))
    has_images = any(image_columns(ds.features) for dd in configs.values() for ds in dd.values())
    data = card_metadata(layouts, kind=kind, mode=mode, corpora=corpora, total=sum(map(len, whole.values())),
                         default_config=default_config)  # fmt: skip
    context = card_context(whole, layouts, kind=kind, build_info=build_info)
    return DatasetCard.from_template(
        data,
        template_str=cards_text(CARD_TEMPLATE),
        kind=kind,
        mode=mode,
        has_images=has_images,
        repo_id=repo_id or f"your-org/{kind}",
        default_config=default_config,
        paper=corpora_metadata()["paper"],
        corpora=corpora,
        **context,
    )


def render_license(configs: Mapping[str, datasets.DatasetDict], *, kind: str, default_config: str) -> str:
    whole = configs[default_config]
    has_images = any(image_columns(ds.features) for dd in configs.values() for ds in dd.values())
    template = jinja2.Template(cards_text(LICENSE_TEMPLATE), keep_trailing_newline=True)
    return template.render(
        pretty_name=PRETTY_NAMES[kind],
        corpora=_corpora(_sources(whole)),
        paper=corpora_metadata()["paper"],
        has_images=has_images,
    )


def card_metadata(
    layouts: Mapping[str, ConfigLayout],
    *,
    kind: str,
    mode: str,
    corpora: list[dict[str, Any]],
    total: int,
    default_config: str,
) -> DatasetCardData:
    """The YAML header: what the Hub indexes and `load_dataset` reads (configs, dataset_info), plus gating."""
    names = ", ".join(c["short_name"] for c in corpora)
    licences = {f"I hold a licence for {c['short_name']} and accept its terms": "checkbox" for c in corpora}
    data = DatasetCardData(
        pretty_name=PRETTY_NAMES[kind] + (" (annotations only)" if mode == "annotations" else ""),
        license="other",
        license_name=LICENSE_NAME,
        license_link="LICENSE",
        task_categories=list(TASK_CATEGORIES),
        tags=[*TAGS, kind],
        size_categories=[_size_category(total)],
        source_datasets=[f"extended|{c['key']}" for c in corpora],
        annotations_creators=["expert-generated", "crowdsourced", "machine-generated"],
        extra_gated_prompt=(
            f"{PRETTY_NAMES[kind]} is derived from licensed corpora ({names}). Their owners license them for "
            "non-commercial research only. Request access only if you hold a licence for each corpus you will "
            "use, and confirm it below. The terms are in LICENSE; the agreements: "
            + "; ".join(f"{c['short_name']} {c['license_link']}" for c in corpora if c["license_link"])
            + "."
        ),
        extra_gated_fields={
            "Name": "text",
            "Affiliation": "text",
            "I will use this dataset for non-commercial research only": "checkbox",
            **licences,
        },
    )
    MetadataConfigs(
        {
            name: {
                "data_files": [{"split": split, "path": paths} for split, paths in layout.data_files.items()],
                **({"default": True} if name == default_config else {}),
            }
            for name, layout in layouts.items()
        }
    ).to_dataset_card_data(data)
    DatasetInfosDict({name: _dataset_info(layout) for name, layout in layouts.items()}).to_dataset_card_data(data)
    return data


def _dataset_info(layout: ConfigLayout) -> DatasetInfo:
    splits = SplitDict()
    for split, count in layout.num_examples.items():
        splits.add(SplitInfo(name=split, num_bytes=layout.num_bytes[split], num_examples=count))
    size = sum(layout.num_bytes.values())
    return DatasetInfo(features=layout.features, splits=splits, download_size=layout.download_size, dataset_size=size)


def card_context(
    whole: datasets.DatasetDict,
    layouts: Mapping[str, ConfigLayout],
    *,
    kind: str,
    build_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every number of the card body, from the rows of the `all` config (and `build_info`)."""
    splits = list(whole)
    tables = {split: _label_table(ds) for split, ds in whole.items()}
    features = next(iter(whole.values())).features
    counts = _counts(tables)
    totals = {split: tables[split].num_rows for split in splits}
    return {
        "pretty_name": PRETTY_NAMES[kind],
        "splits": splits,
        "configs": [{"name": name, "splits": layout.num_examples} for name, layout in layouts.items()],
        "counts": counts,
        "totals": totals,
        "total": sum(totals.values()),
        "expressions": _expressions(tables, features),
        "expression_names": _class_names(features),
        "valence_arousal": _valence_arousal(tables),
        "aus": _aus(tables),
        "au_names": AUS,
        "provenance": _provenance(tables),
        "uncertainty": _uncertainty(tables),
        "status": _status(tables),
        "reasons": _reasons(tables),
        "effort": _effort(tables),
        "build": _build(build_info),
        "schema": _schema(features),
    }


# -- statistics (pure functions of Arrow tables) -------------------------------------------------------------------

STAT_COLUMNS = ("source", "expression", "valence", "arousal", "aus", "provenance", "uncertainty", "mc_samples",
                "requests", "status", "status_reason")  # fmt: skip


def _label_table(ds: datasets.Dataset) -> pa.Table:
    """The label columns only: images are never read for statistics."""
    columns = [c for c in STAT_COLUMNS if c in ds.column_names]
    return ds.select_columns(columns).with_format("arrow")[:]


def _sources(whole: datasets.DatasetDict) -> list[str]:
    seen = {s for ds in whole.values() for s in _label_table(ds).column("source").unique().to_pylist()}
    known = list(corpora_metadata()["corpora"])
    return sorted(seen, key=lambda s: (known.index(s) if s in known else len(known), s))


def _corpora(sources: list[str]) -> list[dict[str, Any]]:
    """Card entries of the corpora present; a custom source gets its name and no licence claims."""
    known = corpora_metadata()["corpora"]
    unknown = {"licence": "see the data owner's terms", "homepage": "", "license_link": "", "bibtex": ""}
    return [{"key": s, **known.get(s, {**unknown, "pretty_name": s, "short_name": s})} for s in sources]


def _counts(tables: Mapping[str, pa.Table]) -> list[dict[str, Any]]:
    per_source: dict[str, dict[str, int]] = {}
    for split, table in tables.items():
        for source, n in label_counts.per_source(table).items():
            per_source.setdefault(source, {})[split] = n
    names = {c["key"]: c["pretty_name"] for c in _corpora(list(per_source))}
    return [
        {"source": s, "pretty_name": names[s], "per_split": per_source[s], "total": sum(per_source[s].values())}
        for s in _corpora_order(per_source)
    ]


def _corpora_order(sources: Any) -> list[str]:
    known = list(corpora_metadata()["corpora"])
    return sorted(sources, key=lambda s: (known.index(s) if s in known else len(known), s))


def _class_names(features: datasets.Features) -> list[str]:
    feature = features.get("expression")
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else list(EXPRESSIONS)


def _expressions(tables: Mapping[str, pa.Table], features: datasets.Features) -> list[dict[str, Any]]:
    names = _class_names(features)
    counts = {split: Counter(t.column("expression").to_pylist()) if "expression" in t.column_names else Counter()
              for split, t in tables.items()}  # fmt: skip
    labelled = {split: sum(n for k, n in c.items() if k not in (None, NOT_ANNOTATED)) for split, c in counts.items()}
    rows = []
    for index, name in enumerate(names):
        row_counts = {split: counts[split].get(index, 0) for split in tables}
        if any(row_counts.values()):
            shares = {split: row_counts[split] / labelled[split] if labelled[split] else 0.0 for split in tables}
            rows.append({"name": name, "counts": row_counts, "shares": shares})
    missing = {split: counts[split].get(NOT_ANNOTATED, 0) + counts[split].get(None, 0) for split in tables}
    if any(missing.values()):
        shares = {split: missing[split] / tables[split].num_rows if tables[split].num_rows else 0.0 for split in tables}
        rows.append({"name": "*not annotated*", "counts": missing, "shares": shares})
    return rows


def _valence_arousal(tables: Mapping[str, pa.Table]) -> list[dict[str, Any]]:
    rows = []
    for split, table in tables.items():
        if not {"valence", "arousal"} <= set(table.column_names):
            continue
        both = pc.and_(pc.is_valid(table.column("valence")), pc.is_valid(table.column("arousal")))
        valence = pc.filter(table.column("valence"), both).to_pylist()
        arousal = pc.filter(table.column("arousal"), both).to_pylist()
        row: dict[str, Any] = {"split": split, "n": len(valence)}
        for name, values in (("valence", valence), ("arousal", arousal)):
            mean = sum(values) / len(values) if values else 0.0
            row[f"{name}_mean"] = mean
            row[f"{name}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else 0.0
        rows.append(row)
    return rows


def _aus(tables: Mapping[str, pa.Table]) -> list[dict[str, Any]]:
    rows = []
    for au in AUS:
        coded, rates = {}, {}
        for split, table in tables.items():
            values = table.column("aus").combine_chunks().field(au) if "aus" in table.column_names else pa.array([])
            counts = Counter(values.to_pylist())
            coded[split] = counts.get(0, 0) + counts.get(1, 0)
            rates[split] = counts.get(1, 0) / coded[split] if coded[split] else 0.0
        rows.append({"au": au, "coded": coded, "rates": rates})
    return rows


def _provenance(tables: Mapping[str, pa.Table]) -> list[dict[str, Any]] | None:
    if not any("provenance" in t.column_names for t in tables.values()):
        return None
    rows = []
    for level in LEVELS:
        counts = label_counts.provenance(tables.values(), level)
        n = sum(counts.values())
        human, generated = counts.get("human", 0), counts.get("generated", 0)
        rows.append({
            "level": level, "human": human, "generated": generated, "missing": n - human - generated,
            "human_share": human / n if n else 0.0, "generated_share": generated / n if n else 0.0,
        })  # fmt: skip
    return rows


def _uncertainty(tables: Mapping[str, pa.Table]) -> list[dict[str, Any]] | None:
    if not any("uncertainty" in t.column_names for t in tables.values()):
        return None
    rows = []
    for level in LEVELS:
        values = sorted(v for v in label_counts.struct_field(tables.values(), "uncertainty", level) if v is not None)
        if values:
            rows.append({
                "level": level, "n": len(values), "mean": sum(values) / len(values),
                "median": _quantile(values, 0.5), "p90": _quantile(values, 0.9), "max": values[-1],
            })  # fmt: skip
    return rows or None


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _status(tables: Mapping[str, pa.Table]) -> list[dict[str, Any]] | None:
    counts = label_counts.status(tables.values())
    if not counts:
        return None
    total = counts.total()
    order = ["accepted", "rejected", "failed"]
    keys = sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))
    return [{"status": k, "count": counts[k], "share": counts[k] / total} for k in keys]


def _reasons(tables: Mapping[str, pa.Table], top: int = 5) -> list[dict[str, Any]]:
    counts = label_counts.reasons(tables.values())
    return [{"reason": reason, "count": n} for reason, n in counts.most_common(top)]


def _effort(tables: Mapping[str, pa.Table]) -> dict[str, Any] | None:
    samples = [v for v in label_counts.column(tables.values(), "mc_samples") or [] if v is not None]
    requests = [v for v in label_counts.column(tables.values(), "requests") or [] if v is not None]
    if not samples and not requests:
        return None
    return {
        "mc_mean": sum(samples) / len(samples) if samples else None,
        "requests_mean": sum(requests) / len(requests) if requests else None,
        "requests_total": sum(requests) if requests else None,
    }


def public_build_info(info: Any) -> Any:
    """`build_info` fit for a public repo: credential-like keys and token-like values removed, and URLs stripped of
    their credentials (`seke_hf.urls.public_url`), at any depth."""
    if isinstance(info, Mapping):
        return {str(k): public_build_info(v) for k, v in info.items()
                if not SECRET_KEY.search(str(k)) and not (isinstance(v, str) and SECRET_VALUE.match(v))}  # fmt: skip
    if isinstance(info, (list, tuple)):
        return [public_build_info(v) for v in info if not (isinstance(v, str) and SECRET_VALUE.match(v))]
    return public_urls_in(info) if isinstance(info, str) else info


def _build(build_info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not build_info:
        return None
    info = public_build_info(build_info)
    settings = info.pop("svuamc", None) or info.pop("settings", None) or {}
    cost = info.pop("estimated_cost", info.pop("cost", None))
    build = {
        "model": info.pop("model", None),
        "settings": [(k, _short(v)) for k, v in settings.items()] if isinstance(settings, Mapping) else [],
        "requests": info.pop("requests", None),
        "tokens": _tokens(info.pop("tokens", None)),
        "cost": f"${cost:,.2f}" if isinstance(cost, (int, float)) else cost,
    }
    build["other"] = [(BUILD_LABELS.get(k, k), _short(v)) for k, v in info.items()]
    return build


BUILD_LABELS = {"seke_hf": "seke-hf version", "answered_from_cache": "answers read from the request cache"}
"""Readable names for the `build_info` keys `seke_hf.pipeline` writes."""


def _tokens(tokens: Any) -> str | None:
    """`tokens` for the card: a number, or {"prompt", "completion", "cached"} where `cached` is the part of the
    prompt tokens the provider served from its prompt cache (so it is shown, not added)."""
    if not isinstance(tokens, Mapping):
        return None if tokens is None else f"{tokens:,}" if isinstance(tokens, int) else str(tokens)
    prompt, completion, cached = (tokens.get(k) for k in ("prompt", "completion", "cached"))
    parts = []
    if isinstance(prompt, int):
        parts.append(f"{prompt:,} prompt" + (f" ({cached:,} cached by the provider)" if cached else ""))
    if isinstance(completion, int):
        parts.append(f"{completion:,} completion")
    return " + ".join(parts) or None


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _schema(features: datasets.Features) -> list[dict[str, str]]:
    meanings = yaml.safe_load(cards_text("columns.yaml"))
    return [{"column": name, "type": _describe(f), "meaning": meanings.get(name, "")} for name, f in features.items()]


def _describe(feature: Any) -> str:
    """A short human name of a `datasets` feature type."""
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel ({feature.num_classes} classes)"
    if isinstance(feature, datasets.Image):
        return "Image"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, dict):
        types = {_describe(f) for f in feature.values()}
        inner = types.pop() if len(types) == 1 else "mixed"
        return f"struct of {len(feature)} × {inner}"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list of {_describe(inner)}"
    return type(feature).__name__


def _size_category(n: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "1B<n<10B")
