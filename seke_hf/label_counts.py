"""Counting what rows hold: rows per source, label levels, provenance, status and rejection reasons.

The build summary (`seke_hf.pipeline`) and the dataset cards (`seke_hf.publish.card`) report the same facts; both
count them here, from the label columns in Arrow (an image is never read to count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from seke_hf.schema import LEVELS, annotated_levels

REJECTED_STATUSES = ("rejected", "failed")


def column(tables: Iterable[pa.Table], name: str) -> list[Any] | None:
    """The values of column `name` over `tables`, or None if no table has it."""
    tables = list(tables)
    if not any(name in t.column_names for t in tables):
        return None
    return [v for t in tables if name in t.column_names for v in t.column(name).to_pylist()]


def struct_field(tables: Iterable[pa.Table], name: str, level: str) -> list[Any]:
    """The `level` field of struct column `name` (e.g. provenance.aus) over the tables that have it."""
    values: list[Any] = []
    for table in tables:
        if name in table.column_names:
            struct = table.column(name).combine_chunks()
            if level in [struct.type.field(i).name for i in range(struct.type.num_fields)]:
                values += pc.struct_field(struct, level).to_pylist()
    return values


def per_source(table: pa.Table) -> Counter[str]:
    return Counter(table.column("source").to_pylist())


def levels_per_source(table: pa.Table) -> dict[str, dict[str, int]]:
    """source -> level -> rows carrying a label of that level."""
    counts: dict[str, Counter[str]] = {}
    columns = [c for c in ("source", "expression", "valence", "arousal", "aus") if c in table.column_names]
    for row in table.select(columns).to_pylist():
        counts.setdefault(row["source"], Counter()).update(annotated_levels(row))
    return {source: dict(levels) for source, levels in counts.items()}


def provenance(tables: Iterable[pa.Table], level: str) -> Counter[Any]:
    """Origin of the `level` labels (human / generated / None) over the tables."""
    return Counter(struct_field(tables, "provenance", level))


def provenance_by_level(table: pa.Table) -> dict[str, dict[Any, int]]:
    return {level: dict(provenance([table], level)) for level in LEVELS}


def provenance_per_source(table: pa.Table) -> dict[str, dict[str, dict[Any, int]]]:
    sources = table.column("source")
    return {
        source: provenance_by_level(table.filter(pc.equal(sources, source)))
        for source in per_source(table)
    }


def status(tables: Iterable[pa.Table]) -> Counter[str] | None:
    """Rows per annotation status (a missing status counts as "unknown"), or None without a status column."""
    values = column(tables, "status")
    return None if values is None else Counter(v or "unknown" for v in values)


def reasons(tables: Iterable[pa.Table]) -> Counter[str]:
    """Status reasons (why a row was rejected or failed), stripped, empty ones left out."""
    return Counter(r.strip() for r in column(tables, "status_reason") or [] if r and r.strip())


def rejected_examples(table: pa.Table, limit: int = 10) -> list[dict[str, Any]]:
    """The first `limit` rejected or failed rows with their reasons."""
    rows = table.select(["sample_id", "status", "status_reason"]).to_pylist()
    return [
        {"sample_id": row["sample_id"], "status": row["status"], "reason": row["status_reason"]}
        for row in rows
        if row["status"] in REJECTED_STATUSES
    ][:limit]


def label_summary(table: pa.Table) -> dict[str, Any]:
    """Everything the build summary says of one dataset's rows."""
    entry: dict[str, Any] = {
        "rows": table.num_rows,
        "per_source": dict(per_source(table)),
        "levels": levels_per_source(table),
    }
    if "status" in table.column_names:
        entry["status"] = dict(status([table]) or {})
        entry["provenance"] = provenance_by_level(table)
        entry["provenance_per_source"] = provenance_per_source(table)
        entry["rejected_examples"] = rejected_examples(table)
    return entry
