"""Hostile conditions for the annotator (issue 17, items 5, 6, 7, 9, 13): a run against a failing server, a broken
cache, results `datasets` cached with failed rows. A paid answer is never lost, a failure is never final."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import datasets
import pytest
from annotate_helpers import hide_one_level, labelled
from loading_helpers import huge_png

from seke_hf import SVUAMCAnnotator
from seke_hf.simulate import SimulatedVLLM

ANNOTATE_TWICE = textwrap.dedent(
    """
    import sys
    import datasets
    from seke_hf import SVUAMCAnnotator

    data, base_url, cache = sys.argv[1:4]
    for _ in range(2):  # the second run is served from the datasets cache, while a prefetch has rows to read
        annotator = SVUAMCAnnotator(base_url=base_url, cache_dir=cache, progress=False, max_concurrency=2)
        out = annotator.annotate(datasets.load_from_disk(data), batch_size=4)
        print(len(out) - out["status"].count("failed"), flush=True)  # every row decided, none failed
        annotator.close()
    """
)


def isolated_env(tmp_path) -> dict[str, str]:
    return dict(
        os.environ,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
    )


@pytest.fixture(scope="module")
def full() -> datasets.Dataset:
    return labelled(40)


def test_a_rerun_served_from_the_datasets_cache_prints_nothing_from_our_event_loop(full, tmp_path):
    hide_one_level(full).save_to_disk(tmp_path / "data")
    with SimulatedVLLM(truth=full) as server:
        args = [sys.executable, "-c", ANNOTATE_TWICE, str(tmp_path / "data"), server.base_url, str(tmp_path / "c")]
        run = subprocess.run(args, capture_output=True, text=True, env=isolated_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["40", "40"]
    for noise in ("Task was destroyed", "Event loop is closed", "was never awaited", "Traceback"):
        assert noise not in run.stderr, run.stderr[-2000:]


def annotator(server: SimulatedVLLM, cache_dir, **kwargs) -> SVUAMCAnnotator:
    kwargs.setdefault("progress", False)
    return SVUAMCAnnotator(base_url=server.base_url, cache_dir=str(cache_dir), **kwargs)


def test_an_image_too_large_to_decode_fails_its_row_with_the_reason(full, tmp_path):
    rows = hide_one_level(full.select(range(3))).cast_column("image", datasets.Image(decode=False))
    bomb = huge_png()
    rows = rows.map(
        lambda row, i: {"image": {"bytes": bomb, "path": None} if i == 1 else row["image"]}, with_indices=True
    )
    with SimulatedVLLM(truth=full) as server:
        ann = annotator(server, tmp_path / "cache")
        out = ann.annotate(rows, batch_size=4)
        ann.close()
    assert out["status"] == ["accepted", "failed", "accepted"], out["status_reason"]
    assert "image" in out["status_reason"][1] and "pixels" in out["status_reason"][1]


# -- failed rows are never final -------------------------------------------------------------------------------------


@pytest.fixture
def on_disk(full, tmp_path) -> datasets.Dataset:
    """Rows read from Arrow files, so that `datasets` caches what is mapped over them."""
    hide_one_level(full.select(range(6))).save_to_disk(tmp_path / "rows")
    return datasets.load_from_disk(str(tmp_path / "rows"))


@pytest.mark.parametrize("how", ["annotate", "map"])
def test_failed_rows_are_retried_even_when_datasets_cached_the_result(full, on_disk, tmp_path, how):
    def run(server: SimulatedVLLM) -> datasets.Dataset:
        ann = annotator(server, tmp_path / "cache", max_retries=0)
        try:
            if how == "annotate":
                return ann.annotate(on_disk, batch_size=4)
            return on_disk.map(ann, batched=True, batch_size=4)  # a user's own map, cache on
        finally:
            ann.close()

    with SimulatedVLLM(truth=full, server_error=1.0) as server:
        down = run(server)
        assert set(down["status"]) == {"failed"}
        server.set_faults(server_error=0.0)
        up = run(server)
        assert up["status"] == ["accepted"] * 6, up["status_reason"]
        sent = server.stats()["requests"]
        again = run(server)  # a result without failed rows is final: served from the datasets cache
        assert server.stats()["requests"] == sent
    assert again.to_list() == up.to_list()
    assert again.cache_files == up.cache_files


def test_a_build_whose_rows_failed_exits_non_zero_and_the_same_command_retries_them(tmp_path, capsys):
    from seke_hf.cli import main
    from seke_hf.synthetic.corpora import write_corpora

    write_corpora(tmp_path / "ROOT", corpora=("rafdb",))
    splits = datasets.load_dataset("rafdb", data_dir=str(tmp_path / "ROOT" / "RAF-DB"))
    with SimulatedVLLM(truth=datasets.concatenate_datasets(list(splits.values())), server_error=1.0) as server:
        argv = ["build", "--corpora-root", str(tmp_path / "ROOT"), "--corpora", "rafdb", "--limit", "4",
                "--base-url", server.base_url, "--max-retries", "0", "--max-samples", "6", "--no-progress",
                "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
        assert main([*argv, "--out", str(tmp_path / "down")]) == 1
        assert "8 of 8 rows failed" in capsys.readouterr().err
        server.set_faults(server_error=0.0)
        assert main([*argv, "--out", str(tmp_path / "up")]) == 0
    summary = json.loads((tmp_path / "up" / "summary.json").read_text())
    assert all(entry["status"] == {"accepted": 4} for entry in summary["datasets"].values()), summary


def test_annotate_cli_exits_non_zero_when_most_rows_failed(full, on_disk, tmp_path, capsys):
    from seke_hf.cli import main

    with SimulatedVLLM(truth=full, server_error=1.0) as server:
        argv = ["annotate", "--data", str(tmp_path / "rows"), "--base-url", server.base_url, "--max-retries", "0",
                "--no-progress", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
        assert main([*argv, "--out", str(tmp_path / "down")]) == 1
        assert "6 of 6 rows failed" in capsys.readouterr().err
        assert main([*argv, "--out", str(tmp_path / "allowed"), "--allow-failures"]) == 0
    assert datasets.load_from_disk(str(tmp_path / "allowed"))["train"]["status"] == ["failed"] * 6
