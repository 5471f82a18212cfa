"""What the annotating commands check before they send anything, and what their cost estimates are priced at."""

from __future__ import annotations

import argparse
import time

import pytest

from seke_hf.cli import CLIError, main
from seke_hf.cli.endpoint import check_reachable, require_api_key
from seke_hf.cli.svuamc_options import add_svuamc_arguments, prices_from_args
from seke_hf.llm.usage import PRICE_TABLE, Prices
from seke_hf.pipeline import render_summary
from seke_hf.simulate import SimulatedVLLM

OPENAI = "https://api.openai.com/v1"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_svuamc_arguments(parser)
    return parser.parse_args(argv)


def test_prices_named_explicit_default_or_none():
    assert prices_from_args(_args(), OPENAI) == PRICE_TABLE["gpt-4o"]
    assert prices_from_args(_args("--model", "gpt-4o-mini-2024-07-18"), OPENAI) == PRICE_TABLE["gpt-4o-mini"]
    assert prices_from_args(_args("--model", "gpt-4o-2024-08-06"), OPENAI) == PRICE_TABLE["gpt-4o"]
    local = "http://127.0.0.1:8000/v1"
    assert not prices_from_args(_args(), local).known  # gpt-4o's name on another server: no price is assumed
    assert prices_from_args(_args("--prices", "gpt-4o"), local) == PRICE_TABLE["gpt-4o"]
    assert not prices_from_args(_args("--prices", "none"), OPENAI).known
    given = prices_from_args(_args("--price-input", "0.2", "--price-output", "0.8"), local)
    assert (given.input, given.cached_input, given.output) == (0.2, 0.2, 0.8)
    assert given.describe() == "$0.20 input, $0.20 cached, $0.80 output per 1M tokens"
    assert "$0.075 cached" in PRICE_TABLE["gpt-4o-mini"].describe()
    with pytest.raises(CLIError, match="--price-output"):
        prices_from_args(_args("--price-input", "0.2"), local)
    with pytest.raises(CLIError, match="gpt-4o, gpt-4o-mini"):
        prices_from_args(_args("--prices", "claude"), local)


def test_unknown_prices_cost_nothing_and_say_so():
    unknown = Prices.unknown()
    assert unknown.cost(1000, 0, 1000) is None and unknown.format(None) == "not priced"
    assert PRICE_TABLE["gpt-4o"].describe().startswith("gpt-4o prices ($2.50 input, $1.25 cached, $10.00 output")
    assert Prices(1.0, 0.5, 4.0).cost(2_000_000, 1_000_000, 1_000_000) == pytest.approx(1.0 + 0.5 + 4.0)


def test_summary_labels_the_estimate_with_its_prices():
    usage = {"requests": 3, "answered_from_cache": 0, "tokens": {"prompt": 10, "completion": 5, "cached": 0}}
    priced = render_summary(
        {"datasets": {}, "usage": {**usage, "estimated_cost": 21.24, "prices": "gpt-4o prices"}}, "out"
    )
    assert "estimated cost $21.24 at gpt-4o prices" in priced
    counted = render_summary({"datasets": {}, "usage": {**usage, "requests": 69, "retries": 13, "failed_requests": 0,
                                                         "estimated_cost": 1.0, "prices": ""}}, "out")  # fmt: skip
    assert "69 requests sent (13 retries, 0 failed; 0 answers from cache)" in counted
    unpriced = render_summary(
        {"datasets": {}, "usage": {**usage, "estimated_cost": None, "prices": "not priced"}}, "out"
    )
    assert "not priced" in unpriced and "$" not in unpriced


def test_no_key_for_openai_is_an_error_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(CLIError, match="OPENAI_API_KEY is not set"):
        require_api_key(OPENAI)
    require_api_key("http://127.0.0.1:8000/v1")  # a local server needs no key
    started = time.monotonic()
    status = main(["build", "--corpora-root", str(tmp_path), "--out", str(tmp_path / "out"), "--limit", "2"])
    assert status == 1 and time.monotonic() - started < 30
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written, nothing selected


def test_an_unreachable_server_is_reported_at_once(monkeypatch):
    with socket_bound_and_closed() as port:
        started = time.monotonic()
        with pytest.raises(CLIError, match="cannot reach the model server"):
            check_reachable(f"http://127.0.0.1:{port}/v1", timeout=5)
        assert time.monotonic() - started < 20
    with SimulatedVLLM(truth=None, api_key="sk-right") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        with pytest.raises(CLIError, match="refused the API key"):
            check_reachable(server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-right")
        check_reachable(server.base_url)
        assert server.stats()["requests"] == 0  # listing models is no completion request


class socket_bound_and_closed:
    """A port nothing listens on (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        return None


def test_simulate_serves_the_faces_a_build_of_the_root_asks_about(tmp_path):
    from seke_hf.cli.simulate import _selected_rows
    from seke_hf.synthetic.corpora import write_corpora

    write_corpora(tmp_path, small=True)
    rows = _selected_rows(tmp_path)
    assert set(rows["source"]) == {"ckplus", "rafdb", "affectnet", "disfa", "bp4d", "affwild2"}
    with pytest.raises(CLIError, match="not a folder"):
        _selected_rows(tmp_path / "nowhere")


def test_failed_rows_are_not_called_rejected():
    examples = [
        {"sample_id": "rafdb/1", "status": "failed", "reason": "gave up after 7 attempts: Error code: 500"},
        {"sample_id": "rafdb/2", "status": "rejected", "reason": "AU12 contradicts the human expression"},
    ]
    entry = {"rows": 3, "per_source": {"rafdb": 3}, "levels": {}, "released_rows": 3,
             "status": {"accepted": 1, "failed": 1, "rejected": 1}, "rejected_examples": examples}  # fmt: skip
    text = render_summary({"datasets": {"feid": entry}, "usage": {}}, "out")
    assert "    failed rafdb/1: gave up" in text and "    rejected rafdb/2: AU12" in text
    assert "rejected rafdb/1" not in text
