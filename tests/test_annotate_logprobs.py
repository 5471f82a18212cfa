"""The annotator asks for the greedy answer's logprobs and uses them where the server gives them; servers that
ignore or refuse them get the same labels from the votes alone, and nothing is paid twice."""

from __future__ import annotations

import logging

import pytest
from annotate_helpers import hide_one_level, labelled

from seke_hf import SVUAMCAnnotator
from seke_hf.llm import Prices, RequestCache
from seke_hf.simulate import SimulatedVLLM


@pytest.fixture(scope="module")
def faces():
    full = labelled(12)
    return full, hide_one_level(full)


FLAT = Prices(2.5, 2.5, 10.0, name="no provider cache discount")
"""Follow-ups are sized from the cost of the tokens a server reports; a server's prompt cache warms up differently
from run to run, so the comparisons price cached tokens as any others."""


def annotate(server, data, cache, **params):
    annotator = SVUAMCAnnotator(
        base_url=server.base_url, cache_dir=str(cache), progress=False, prices=FLAT, **params
    )
    out = data.map(annotator, batched=True, batch_size=12, load_from_cache_file=False)
    annotator.close()
    return out


LABELS = ("expression", "valence", "arousal", "aus", "status")


def test_logprobs_order_rows_without_changing_labels(faces, tmp_path):
    full, hidden = faces
    with SimulatedVLLM(truth=full, profile="weak", seed=3) as server:
        with_logprobs = annotate(server, hidden, tmp_path / "a")
        sent = server.stats()["requests"]
        again = annotate(server, hidden, tmp_path / "a")  # the cache holds the logprobs: same output, no request
        assert server.stats()["requests"] == sent
        server.set_faults(logprobs="ignore")
        without = annotate(server, hidden, tmp_path / "b")
    assert again.to_list() == with_logprobs.to_list()
    for row in with_logprobs:  # each generated AU has its own uncertainty; human or missing AUs have none
        generated = row["provenance"]["aus"] == "generated"
        values = row["au_uncertainty"].values()
        assert all(u is not None for u in values) if generated else all(u is None for u in values)
        if generated:
            assert all(0.0 <= u <= 1.0 for u in row["au_uncertainty"].values())
    stored = RequestCache(tmp_path / "a" / "requests.sqlite")
    assert any("logprobs" in value for value in stored.values_since(0))
    # The labels come from the answers; the model's probabilities weigh the uncertainty (which may move a level
    # across `max_uncertainty`) and the knowledge fallback's choice among candidates.
    both = [
        i
        for i in range(len(hidden))
        if with_logprobs[i]["status"] == without[i]["status"] == "accepted"
        and with_logprobs[i]["provenance"] == without[i]["provenance"]
        and "fallback" not in with_logprobs[i]["status_reason"] + without[i]["status_reason"]
    ]
    assert both
    for i in both:
        assert {k: with_logprobs[i][k] for k in LABELS} == {k: without[i][k] for k in LABELS}
    differs = [
        i
        for i in both
        for level in ("expression", "aus")
        if with_logprobs[i]["uncertainty"][level] != without[i]["uncertainty"][level]
    ]
    assert differs, "the model's probabilities changed no uncertainty"


def test_a_server_that_refuses_logprobs_is_asked_without_them(faces, tmp_path, caplog):
    full, hidden = faces
    with SimulatedVLLM(truth=full, seed=1, logprobs="ignore") as server:
        ignored = annotate(server, hidden, tmp_path / "ignored")
    with SimulatedVLLM(truth=full, seed=1, logprobs="refuse") as server:
        with caplog.at_level(logging.WARNING, logger="seke_hf.llm.client"):
            refused = annotate(server, hidden, tmp_path / "refused")
        stats = server.stats()
    assert [r for r in caplog.messages if "refuses logprobs" in r]
    assert 1 <= stats["errors"]["400"] <= len(hidden)  # learnt at the first answers, remembered for the run
    for a, b in zip(refused.to_list(), ignored.to_list(), strict=True):
        assert {k: a[k] for k in (*LABELS, "uncertainty")} == {k: b[k] for k in (*LABELS, "uncertainty")}
