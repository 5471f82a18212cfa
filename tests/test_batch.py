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
from seke_hf.llm import Prices
from seke_hf.llm.batch import BatchLimits
from seke_hf.simulate import SimulatedVLLM

API_KEY = "sk-test-secret-0123456789"
ONLINE = Prices()
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


@pytest.fixture(scope="module")
def online(full, partial, tmp_path_factory):
    """The online run's output and its request count (the reference a batch run must match)."""
    with SimulatedVLLM(truth=full) as server:
        ann = annotator(server, tmp_path_factory.mktemp("online"))
        out = ann.annotate(partial, batch_size=8)
        return rows(out), server.stats()["requests"]


def server_cost(stats: dict, prices: Prices = ONLINE) -> float:
    """What the server counted, priced."""
    return prices.cost(stats["prompt_tokens"], stats["cached_tokens"], stats["completion_tokens"])


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


CHILD_RUN = textwrap.dedent(
    f"""
    import sys, datasets
    from seke_hf import SVUAMCAnnotator
    from seke_hf.annotate.batch_run import BatchOptions
    data, base_url, cache, out = sys.argv[1:]
    ann = SVUAMCAnnotator(base_url=base_url, api_key="{API_KEY}", cache_dir=cache, progress=False, min_samples=2,
                          max_samples=8, batch=BatchOptions(poll_interval=0.05))
    ann.annotate(datasets.load_from_disk(data), batch_size=8).save_to_disk(out)
    """
)


def test_killed_while_a_batch_runs_resumes_without_submitting_anything_twice(full, partial, online, tmp_path):
    expected, online_requests = online
    partial.save_to_disk(tmp_path / "data")
    with SimulatedVLLM(truth=full, api_key=API_KEY, batch_delay=1.0) as server:
        args = [sys.executable, "-c", CHILD_RUN, str(tmp_path / "data"), server.base_url, str(tmp_path / "cache")]
        child = subprocess.Popen([*args, str(tmp_path / "killed")], env=os.environ.copy())
        deadline = time.monotonic() + 120
        while not server.stats()["batch"]["batches"].get("completed") and time.monotonic() < deadline:
            time.sleep(0.02)  # round 1 done ...
        while sum(server.stats()["batch"]["batches"].values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # ... and round 2 submitted, not finished
        child.send_signal(signal.SIGKILL)
        child.wait()
        running = server.stats()["batch"]["batches"]
        assert running in ({"completed": 1, "in_progress": 1}, {"completed": 1, "validating": 1})
        (state_file,) = (tmp_path / "cache" / "batches").glob("*.json")
        state = state_file.read_text()
        assert API_KEY not in state and json.loads(state)["round"] == 2
        server.set_faults(batch_delay=0.2)
        subprocess.run([*args, str(tmp_path / "resumed")], env=os.environ.copy(), check=True)
        stats = server.stats()
    assert stats["batch"]["requests"] == online_requests  # every request answered exactly once
    assert stats["requests"] == 0
    batches = stats["batch"]["batches"]["completed"]
    resumed = datasets.load_from_disk(str(tmp_path / "resumed"))
    assert batches == max(resumed["requests"])  # the resumed process adopted round 2: no extra batch
    assert rows(resumed) == expected


def test_no_wait_submits_and_each_rerun_picks_up(server, partial, online, tmp_path):
    expected, online_requests = online
    runs = 0
    while True:
        runs += 1
        ann = annotator(server, tmp_path, batch=batch(wait=False))
        try:
            out = ann.annotate(partial, batch_size=8)
            break
        except BatchPending as pending:
            assert "run the same command again" in str(pending)
            (state_file,) = (tmp_path / "batches").glob("*.json")
            assert API_KEY not in state_file.read_text()
        finally:
            ann.close()
        time.sleep(0.1)
        assert runs < 40
    assert rows(out) == expected
    stats = server.stats()["batch"]
    assert stats["requests"] == online_requests and stats["batches"]["completed"] == max(out["requests"])
    assert runs >= 1 + stats["batches"]["completed"]


@pytest.mark.parametrize("fault", ["batch_expire", "batch_validation", "batch_line_error", "cancel"])
def test_expired_failed_and_cancelled_batches_lose_nothing(server, partial, online, tmp_path, fault):
    """The answered lines are kept, the others asked again next round: the output is still the online one."""
    expected, online_requests = online
    if fault == "cancel":
        server.set_faults(batch_delay=1.0)
        import openai

        def cancel_first() -> None:
            with openai.OpenAI(base_url=server.base_url, api_key=API_KEY) as client:
                while not (found := client.batches.list().data) or found[-1].request_counts.completed < 3:
                    time.sleep(0.02)
                client.batches.cancel(found[-1].id)

        import threading

        canceller = threading.Thread(target=cancel_first)
        canceller.start()
    else:
        server.inject(fault, 3 if fault == "batch_line_error" else 1)
    out = annotator(server, tmp_path, batch=batch()).annotate(partial, batch_size=8)
    if fault == "cancel":
        canceller.join()
    assert rows(out) == expected
    stats = server.stats()["batch"]
    first = {"batch_expire": "expired", "batch_validation": "failed", "cancel": "cancelled"}.get(fault)
    if first:
        assert stats["batches"][first] == 1
    answered = stats["completions"]
    assert answered == online_requests  # each request answered (and paid) once
    assert stats["faults"].get(fault, 0) == (3 if fault == "batch_line_error" else 0 if fault == "cancel" else 1)


def test_rows_that_keep_failing_end_failed_and_the_next_run_retries_them(server, partial, online, tmp_path):
    expected, _ = online
    server.set_faults(batch_line_error=1.0)
    out = annotator(server, tmp_path, batch=batch(max_attempts=2)).annotate(partial, batch_size=8)
    assert set(out["status"]) == {"failed"}
    assert all("no batch answer after 2 rounds" in reason and "500" in reason for reason in out["status_reason"])
    assert server.stats()["batch"]["batches"] == {"completed": 2}
    server.set_faults(batch_line_error=0.0)
    again = annotator(server, tmp_path, batch=batch(max_attempts=2)).annotate(partial, batch_size=8)
    assert rows(again) == expected


def test_rounds_over_the_provider_limits_are_split(full, partial, online, tmp_path):
    expected, online_requests = online
    with SimulatedVLLM(truth=full, api_key=API_KEY, batch_max_requests=5) as server:
        out = annotator(server, tmp_path, batch=batch(limits=BatchLimits(max_requests=5))).annotate(partial)
        stats = server.stats()["batch"]
    assert rows(out) == expected and stats["requests"] == online_requests
    assert "failed" not in stats["batches"] and stats["batches"]["completed"] > max(out["requests"])


def test_a_process_killed_inside_submit_finds_its_batch_by_metadata(server, partial, online, tmp_path):
    expected, online_requests = online
    with pytest.raises(BatchPending):
        annotator(server, tmp_path, batch=batch(wait=False)).annotate(partial, batch_size=8)
    (state_file,) = (tmp_path / "batches").glob("*.json")
    state = json.loads(state_file.read_text())
    assert [s["round"] for s in state["submissions"]] == [1]
    state["submissions"][0]["batch_id"] = None  # created at the provider, but the id never reached the state
    state_file.write_text(json.dumps(state))
    out = annotator(server, tmp_path, batch=batch()).annotate(partial, batch_size=8)
    stats = server.stats()["batch"]
    assert rows(out) == expected
    assert stats["requests"] == online_requests and stats["batches"]["completed"] == max(out["requests"])


def offline_runner(server: SimulatedVLLM, requests_file, results_file, *, garbage: bool = False) -> None:
    """What `vllm run-batch -i requests_file -o results_file` does, against the simulator's online endpoint."""
    import openai

    out = []
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY) as client:
        for line in requests_file.read_text().splitlines():
            request = json.loads(line)
            assert request["method"] == "POST" and request["url"] == "/v1/chat/completions"
            body = client.chat.completions.create(**request["body"]).model_dump()
            response = {"status_code": 200, "request_id": f"req-{len(out)}", "body": body}
            out.append(
                json.dumps(
                    {"id": f"vllm-{len(out)}", "custom_id": request["custom_id"], "response": response, "error": None}
                )
            )
    if garbage:
        out += ["{not json", out[0], out[0].replace(json.loads(out[0])["custom_id"], "someone-else")]
    results_file.write_text("\n".join(out) + "\n")


def test_offline_files_for_vllm_run_batch(server, partial, online, tmp_path, caplog):
    expected, online_requests = online
    exported, imports = tmp_path / "export", []
    caplog.set_level("INFO", logger="seke_hf")
    for round_number in range(1, 20):
        options = batch(export_dir=str(exported), import_files=tuple(imports))
        try:
            out = annotator(server, tmp_path / "cache", batch=options).annotate(partial, batch_size=8)
            break
        except BatchPending as pending:
            (written,) = exported.glob(f"*-round{round_number:03d}-part0.jsonl")
            assert str(written) in str(pending) and "--batch-import" in str(pending)
            assert API_KEY not in written.read_text()
            imports.append(tmp_path / f"results{round_number}.jsonl")  # earlier files stay: read, they change nothing
            offline_runner(server, written, imports[-1], garbage=round_number == 1)
    assert rows(out) == expected
    assert server.stats()["requests"] == online_requests and server.stats()["batch"]["requests"] == 0
    assert "(1 unknown, 1 duplicate, 1 malformed lines skipped)" in caplog.text


def test_budget_online_stops_before_the_cap_and_a_rerun_continues(full, partial, online, tmp_path):
    expected, online_requests = online
    with SimulatedVLLM(truth=full, api_key=API_KEY) as server:
        whole = annotator(server, tmp_path / "whole").annotate(partial, batch_size=8)
        full_cost = server_cost(server.stats())
        server.reset_stats()
        cap = full_cost * 0.4
        ann = annotator(server, tmp_path / "cache", max_cost=cap)
        out = ann.annotate(partial, batch_size=8)
        first = server.stats()
        assert 0 < server_cost(first) <= cap  # never past the cap, measured by the server
        assert ann.budget.spent == pytest.approx(server_cost(first))
        reasons = [r for s, r in zip(out["status"], out["status_reason"], strict=True) if s == "failed"]
        assert reasons and all(r.startswith("budget") for r in reasons)
        assert "accepted" in out["status"] and "max_cost $" in ann.usage_summary()
        server.reset_stats()
        again = annotator(server, tmp_path / "cache", max_cost=full_cost * 2).annotate(partial, batch_size=8)
        assert first["requests"] + server.stats()["requests"] == online_requests  # nothing paid twice
    assert rows(again) == rows(whole) == expected


def test_budget_in_batch_mode_counts_batch_prices(server, partial, online, tmp_path):
    expected, online_requests = online
    whole = annotator(server, tmp_path / "whole", batch=batch()).annotate(partial, batch_size=8)
    full_cost = server.stats()["batch"]["cost_usd"]
    assert full_cost == pytest.approx(server_cost(server.stats()["batch"], ONLINE.batch()), abs=1e-6)
    server.reset_stats()
    cap = full_cost * 0.5
    out = annotator(server, tmp_path / "cache", batch=batch(), max_cost=cap).annotate(partial, batch_size=8)
    first = server.stats()["batch"]
    assert 0 < first["cost_usd"] <= cap
    assert any(r.startswith("budget") for r in out["status_reason"]) and "accepted" in out["status"]
    server.reset_stats()
    again = annotator(server, tmp_path / "cache", batch=batch(), max_cost=cap * 4).annotate(partial, batch_size=8)
    assert first["requests"] + server.stats()["batch"]["requests"] == online_requests
    assert rows(again) == rows(whole) == expected


def test_a_budget_too_small_for_any_request_sends_nothing_and_ends_every_row(server, partial, tmp_path):
    ann = annotator(server, tmp_path, batch=batch(wait=False), max_cost=0.0001)
    out = ann.annotate(partial, batch_size=8)  # nothing to wait for: no BatchPending
    assert set(out["status"]) == {"failed"} and all(r.startswith("budget") for r in out["status_reason"])
    assert server.stats()["batch"]["requests"] == 0 and ann.budget.spent == 0
