"""`seke-hf annotate` end to end: imagefolder and saved-dataset inputs, against the simulated vision LLM."""

from __future__ import annotations

import argparse

import datasets
import pytest
from annotate_helpers import hide_one_level, labelled

from seke_hf.cli import CLIError
from seke_hf.cli import annotate as annotate_cli
from seke_hf.simulate import SimulatedVLLM


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    annotate_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["annotate", *argv, "--no-progress"])
    return args.func(args)


def test_imagefolder_and_saved_dataset(tmp_path):
    full = labelled(6)
    folder = tmp_path / "faces"
    folder.mkdir()
    for row in full:
        row["image"].save(folder / f"{row['sample_id'].replace('/', '_')}.png")
    saved = tmp_path / "saved"
    hide_one_level(full).save_to_disk(saved)
    with SimulatedVLLM(truth=full) as server:
        common = ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        assert run("--data", f"imagefolder:{folder}", "--out", str(tmp_path / "out1"), *common) == 0
        assert run("--data", str(saved), "--out", str(tmp_path / "out2"), "--limit", "3", *common) == 0
    plain = datasets.load_from_disk(str(tmp_path / "out1"))["train"]
    assert len(plain) == 6
    assert plain.features["expression"] == datasets.ClassLabel(
        names=datasets.load_from_disk(str(saved)).features["expression"].names
    )
    assert {s for s in plain["status"]} <= {"accepted", "rejected"}
    assert any(p["expression"] == "generated" for p in plain["provenance"])
    partial = datasets.load_from_disk(str(tmp_path / "out2"))["train"]
    assert len(partial) == 3 and partial["status"] == ["accepted"] * 3


def test_a_local_hub_layout_loads_like_the_hub(tmp_path):
    from seke_hf.cli.annotate import load_data
    from seke_hf.publish import build_repo

    faces = datasets.Dataset.from_dict({"sample_id": ["a", "b"], "source": ["rafdb", "rafdb"]})
    build_repo({"rafdb": datasets.DatasetDict({"test": faces})}, tmp_path / "hub", kind="feab", mode="annotations")
    loaded = load_data(str(tmp_path / "hub"), "test")
    assert loaded["test"]["sample_id"] == ["a", "b"]


def test_clear_errors_for_bad_inputs(tmp_path):
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(CLIError, match="not a saved dataset"):
        run("--data", str(tmp_path / "not_a_dataset"), "--out", str(tmp_path / "out"))
    with pytest.raises(CLIError, match="is not a folder"):
        run("--data", f"imagefolder:{tmp_path / 'missing'}", "--out", str(tmp_path / "out"))
