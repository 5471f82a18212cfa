"""SV-UAMC in batch mode over real HTTP against the simulator's Batch API: the same outputs as online for the same
answers, resumable across processes, failures that end every row in a status, offline files, and the budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import datasets
import pytest
from annotate_helpers import hide_one_level, labelled

from seke_hf import SVUAMCAnnotator
from seke_hf.annotate.batch_run import BatchOptions, BatchPending
from seke_hf.llm.batch import BatchLimits
from seke_hf.simulate import SimulatedVLLM

API_KEY = "sk-test-secret-0123456789"
SAMPLING = {"min_samples": 2, "max_samples": 8}
"""Small first rounds, so rows need several rounds (and some a verification request)."""


def annotator(server: SimulatedVLLM, cache_dir, **kwargs) -> SVUAMCAnnotator:
    kwargs.setdefault("progress", False)
    return SVUAMCAnnotator(base_url=server.base_url, api_key=API_KEY, cache_dir=str(cache_dir), **SAMPLING, **kwargs)


def batch(**options) -> BatchOptions:
    options.setdefault("poll_interval", 0.05)
    return BatchOptions(**options)


def rows(ds: datasets.Dataset) -> list[dict]:
    return ds.remove_columns("image").to_list()


@pytest.fixture(scope="module")
def full() -> datasets.Dataset:
    return labelled(12)


@pytest.fixture(scope="module")
def partial(full) -> datasets.Dataset:
    return hide_one_level(full)


@pytest.fixture
def server(full):
    with SimulatedVLLM(truth=full, api_key=API_KEY, batch_delay=0.2) as server:
        yield server


@pytest.fixture
def online(full, partial, tmp_path_factory):
    """The online run's output and its request count (the reference a batch run must match)."""
    with SimulatedVLLM(truth=full) as server:
        ann = annotator(server, tmp_path_factory.mktemp("online"))
        out = ann.annotate(partial, batch_size=8)
        return rows(out), server.stats()["requests"]


def test_batch_run_gives_the_online_output_in_one_batch_per_round(server, partial, online, tmp_path):
    expected, online_requests = online
    ann = annotator(server, tmp_path, batch=batch())
    out = ann.annotate(partial, batch_size=8)
    assert rows(out) == expected
    stats = server.stats()
    assert stats["requests"] == 0  # nothing online
    assert stats["batch"]["requests"] == online_requests  # the same requests, each once
    assert stats["batch"]["batches"] == {"completed": stats["batch"]["batches"]["completed"]}
    rounds = stats["batch"]["batches"]["completed"]
    assert rounds == max(out["requests"]) >= 2  # one batch per round: as many as the longest row's requests
    assert "budget: spent $" in ann.usage_summary()
    assert not list((tmp_path / "batches").glob("*.json"))  # the finished run leaves no state behind
