"""Hostile conditions for the evaluation (issue 17, items 11 and 12): an unreachable server must not pass for a
model scoring 0, and a large predictions file must be scored in memory proportional to the references."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from seke_hf.evaluate import load_predictions, score
from seke_hf.schema import AUS, EXPRESSIONS


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
