"""`seke-hf build --batch`, `--no-wait`, `--max-cost` and `--estimate` end to end against the simulator."""

from __future__ import annotations

import argparse
import json
import re

import datasets
import pytest

from seke_hf import feid
from seke_hf.cli import build as build_cli
from seke_hf.cli.svuamc_options import PENDING_EXIT
from seke_hf.llm import Prices
from seke_hf.selection import SelectionParams
from seke_hf.simulate import SimulatedVLLM, truth_from_dataset

SMALL = {"min_frame_gap": {"disfa": 3, "bp4d": 2, "affwild2": 2}}


def build(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="seke-hf")
    build_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["build", *argv])
    return args.func(args)


def labels(out) -> dict[str, list[dict]]:
    """Everything a build wrote but the images."""
    rows = {}
    for kind, split in (("feid", "train"), ("feab", "test")):
        ds = datasets.load_from_disk(str(out / "arrow" / kind))[split]
        rows[kind] = ds.remove_columns([c for c in ("image", "images") if c in ds.column_names]).to_list()
    return rows


@pytest.fixture(scope="module")
def truth(corpora_root):
    splits = feid.build(corpora_root, params=SelectionParams.from_dict(SMALL)).datasets
    return truth_from_dataset(datasets.concatenate_datasets(list(splits.values())))


def common(server: SimulatedVLLM, corpora_root, cache) -> list[str]:
    return [
        "--corpora-root",
        str(corpora_root),
        "--base-url",
        server.base_url,
        "--prices",
        "gpt-4o",  # a local server has no list prices: the estimate and the budget are priced as GPT-4o
        "--limit",
        "6",
        "--min-samples",
        "2",
        "--max-samples",
        "6",
        "--no-progress",
        "--selection",
        json.dumps(SMALL),
        "--cache-dir",
        str(cache),
    ]


def test_build_batch_matches_the_online_build_and_no_wait_resumes(corpora_root, truth, tmp_path, capsys):
    with SimulatedVLLM(truth=truth) as server:
        assert build(*common(server, corpora_root, tmp_path / "online"), "--out", str(tmp_path / "online")) == 0
        online_requests = server.stats()["requests"]
        server.reset_stats()
        server.set_faults(batch_delay=0.3)
        argv = [*common(server, corpora_root, tmp_path / "cache"), "--out", str(tmp_path / "batch"), "--batch"]
        assert build(*argv, "--no-wait") == PENDING_EXIT  # round 1 submitted, the process exits
        assert not (tmp_path / "batch" / "summary.json").exists()
        assert build(*argv, "--poll-interval", "0.05") == 0  # picks round 1 up, waits for the others
        stats = server.stats()
    assert stats["requests"] == 0 and stats["batch"]["requests"] == online_requests
    assert labels(tmp_path / "batch") == labels(tmp_path / "online")
    printed = capsys.readouterr().out
    assert "waiting for batches: round 1 in flight" in printed
    summary = json.loads((tmp_path / "batch" / "summary.json").read_text())
    assert summary["usage"]["estimated_cost"] == pytest.approx(stats["batch"]["cost_usd"], abs=1e-3)


def test_max_cost_and_estimate(corpora_root, truth, tmp_path, capsys):
    with SimulatedVLLM(truth=truth) as server:
        argv = common(server, corpora_root, tmp_path / "cache")
        assert build(*argv, "--estimate", "6") == 0
        printed = capsys.readouterr().out
        paid = server.stats()
        match = re.search(r"total\s+(\d+) rows: \$([\d.,]+) online, \$([\d.,]+) batch", printed)
        assert match and "from 6 rows annotated online" in printed, printed
        online, batch = float(match.group(2)), float(match.group(3))
        assert batch == pytest.approx(online / 2, rel=0.02) and online > 0
        assert paid["requests"] > 0 and not (tmp_path / "out").exists()

        total_rows = int(match.group(1))
        cap = online / total_rows * 12 * 0.3  # this build has 12 rows (6 FEID, 6 FEAB): ~ online / total_rows * 12
        assert build(*argv, "--out", str(tmp_path / "out"), "--max-cost", f"{cap:.6f}") == 0
        spent = Prices().cost(
            server.stats()["prompt_tokens"], server.stats()["cached_tokens"], server.stats()["completion_tokens"]
        )
        statuses = [row["status_reason"] for rows in labels(tmp_path / "out").values() for row in rows]
        assert any(reason.startswith("budget") for reason in statuses)
        assert spent - Prices().cost(paid["prompt_tokens"], paid["cached_tokens"], paid["completion_tokens"]) <= cap
    # (a re-run with a larger budget continues from the cache: tests/test_batch.py, online and in batch mode)
