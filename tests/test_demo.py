"""`seke-hf demo` end to end, as a newcomer runs it: the real command, in a fresh folder, twice."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets

from seke_hf.schema import EXPRESSIONS


def _demo(out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "seke_hf", "demo", "--out", str(out), "--no-progress", *extra],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_demo_runs_offline_and_its_outputs_load_with_plain_datasets(tmp_path):
    out = tmp_path / "demo"
    first = _demo(out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "FEID:" in first.stdout and "FEAB:" in first.stdout and "# FEAB evaluation" in first.stdout
    assert "HTTP Request" not in first.stderr  # our progress, not one log line per request

    feid = datasets.load_dataset(str(out / "build" / "hub" / "feid"), "all")
    feab = datasets.load_dataset(str(out / "build" / "hub" / "feab"), "all")
    train, test = feid["train"], feab["test"]
    assert train.num_rows > 100 and test.num_rows > 20
    assert set(train["source"]) == {"ckplus", "rafdb", "affectnet", "disfa", "bp4d", "affwild2"}
    assert train.features["expression"].names == EXPRESSIONS
    row = train[0]
    assert row["messages"][0]["content"].count("<image>") == len(row["images"]) == 1
    assert {"provenance", "uncertainty", "status"} <= set(test.column_names)
    assert set(test["status"]) <= {"accepted", "rejected", "failed"} and "failed" not in test["status"]

    record = json.loads((out / "demo.json").read_text())
    assert record["server"]["requests"] > 0
    report = json.loads((out / "report" / "report.json").read_text())
    (model,) = report["models"].values()
    accuracy = model["overall"]["expression"]["accuracy"]
    assert 0.3 < accuracy <= 1.0  # the simulated model is noisy but far better than chance (1/9)

    # Annotation and evaluation are cached: the same demo again pays for no request at all.
    second = _demo(out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((out / "demo.json").read_text())["server"]["requests"] == 0
