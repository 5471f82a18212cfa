"""Hostile conditions for the annotator (issue 17, items 5, 6, 7, 9, 13): a run against a failing server, a broken
cache, results `datasets` cached with failed rows. A paid answer is never lost, a failure is never final."""

from __future__ import annotations

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
        print(out["status"].count("accepted"), flush=True)
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
