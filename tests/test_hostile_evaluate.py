"""Hostile conditions for the evaluation (issue 17, items 11 and 12): an unreachable server must not pass for a
model scoring 0, and a large predictions file must be scored in memory proportional to the references."""

from __future__ import annotations

import json
import logging
import socket
import tracemalloc

import datasets
import pytest

from seke_hf.evaluate import load_predictions, run, score
from seke_hf.schema import AUS, EXPRESSIONS, FEATURES, empty_row
from seke_hf.simulate import SimulatedVLLM, truth_from_dataset
from seke_hf.synthetic.faces import draw_face


def references(n: int) -> list[dict]:
    return [
        {
            "sample_id": f"s{i}",
            "source": "rafdb",
            "expression": i % 8,
            "valence": 0.5,
            "arousal": -0.5,
            "aus": {au: (i + k) % 2 for k, au in enumerate(AUS)},
        }
        for i in range(n)
    ]


def test_scoring_a_file_holds_its_parse_not_its_records(tmp_path):
    """Records are read one at a time and only their parse is kept: memory follows the references, not the file
    (each record here carries 4 kB of extra fields, as a run's metadata or a model's long answer would)."""
    refs = references(1000)
    path = tmp_path / "predictions.jsonl"
    with open(path, "w") as f:
        for i, ref in enumerate(refs):
            record = {"sample_id": ref["sample_id"], "expression": EXPRESSIONS[i % 8], "aus": ["AU6", "AU12"]}
            f.write(json.dumps({**record, "trace": "x" * 4000}) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        result = score(path, refs, tasks=("expression", "aus"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["overall"]["expression"]["accuracy"] == 1.0
    assert peak < size / 2, f"scoring a {size >> 10} kB file took {peak >> 10} kB"


def test_scoring_a_file_equals_scoring_its_records(tmp_path):
    refs = references(60)
    path = tmp_path / "predictions.jsonl"
    with open(path, "w") as f:
        for i, ref in enumerate(refs):
            answer = f"<answer>{EXPRESSIONS[(i + i % 3) % 8]}</answer>" if i % 7 else "The face shows " + "x" * 300
            f.write(json.dumps({"sample_id": ref["sample_id"], "task": "expression", "answer": answer}) + "\n")
            f.write(json.dumps({"sample_id": ref["sample_id"], "valence": 0.1 * (i % 10), "arousal": 0.2}) + "\n")
            if i % 11 == 0:
                f.write(json.dumps({"sample_id": f"unknown{i}", "task": "aus", "answer": "AU1"}) + "\n")
    from_file = score(path, refs)
    assert from_file == score(load_predictions(path), refs)
    assert from_file["unmatched_predictions"] == 6
    quoted = from_file["overall"]["expression"]["answers"]["examples"]["unparseable"][0]["answer"]
    assert quoted.startswith("The face shows") and quoted.endswith("...") and len(quoted) == 203


def test_a_second_prediction_for_a_question_is_still_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    line = json.dumps({"sample_id": "s1", "task": "expression", "answer": "anger"})
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(ValueError, match="line 2: a second prediction"):
        score(path, references(3))


# -- an unreachable or failing server ----------------------------------------------------------------------------


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


@pytest.fixture(scope="module")
def feab(tmp_path_factory):
    rows = []
    for i in range(12):
        row = empty_row(f"rafdb/{i:03d}", "rafdb", image=draw_face(i, EXPRESSIONS[i % 7], size=(48, 48)))
        row["expression"], row["valence"], row["arousal"] = i % 7, 0.1, 0.2
        rows.append(row)
    path = tmp_path_factory.mktemp("feab") / "feab"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows, features=FEATURES)}).save_to_disk(path)
    return path


def evaluate_cli(*argv: str) -> int:
    from seke_hf.cli import main

    return main(["evaluate", "--no-progress", "--no-plots", "--max-retries", "1", *argv])


def test_evaluate_against_an_unreachable_server_fails_fast_and_says_so(feab, tmp_path, capsys, caplog):
    endpoint = dead_endpoint()
    argv = ["--model", "m", "--base-url", endpoint, "--data", str(feab), "--cache-dir", str(tmp_path / "cache")]
    with caplog.at_level(logging.WARNING):
        code = evaluate_cli(*argv, "--out", str(tmp_path / "report"))
    assert code != 0
    error = capsys.readouterr().err
    assert "24 of 24 questions failed" in error and "--allow-failures" in error and "Connection error" in error
    assert not (tmp_path / "report" / "report.md").exists()
    # said at the first failed attempt, and the run stopped after the first question instead of retrying all 24
    assert any("cannot reach" in r.getMessage() and endpoint in r.getMessage() for r in caplog.records)
    assert any(endpoint in r.getMessage() and "not asking the 23 remaining" in r.getMessage() for r in caplog.records)
    predictions = load_predictions(tmp_path / "report" / "predictions" / "m.jsonl")
    assert [p["error"].startswith("not asked") for p in predictions].count(True) == 23

    assert evaluate_cli(*argv, "--out", str(tmp_path / "allowed"), "--allow-failures") == 0
    assert "| overall | m | 12 | 0.000 |" in (tmp_path / "allowed" / "report.md").read_text()


def test_a_run_where_most_requests_fail_mid_way_is_not_reported(feab, tmp_path, capsys):
    ds = datasets.load_from_disk(str(feab))["test"]
    with SimulatedVLLM(truth=truth_from_dataset(ds)) as server:
        first = run(ds.select(range(2)), "m", server.base_url, cache_dir=tmp_path / "cache", progress=False)
        assert first.info["failed_questions"] == 0
        server.inject("server_error", 1000)
        argv = ["--model", "m", "--base-url", server.base_url, "--data", str(feab), "--out", str(tmp_path / "r")]
        code = evaluate_cli(*argv, "--cache-dir", str(tmp_path / "cache"))
    assert code != 0
    assert "20 of 24 questions failed" in capsys.readouterr().err  # the 4 answered before came from the cache
