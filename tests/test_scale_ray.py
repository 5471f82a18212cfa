"""SV-UAMC on a local Ray cluster against the simulated vision LLM: the single-process output, nothing paid twice."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import datasets
import pytest
from annotate_helpers import hide_one_level, labelled

from seke_hf import SVUAMCAnnotator
from seke_hf.cli import main
from seke_hf.llm.cache import CACHE_FILE, RequestCache
from seke_hf.scale import MissingExtra, annotate_with_ray, require, write_shards
from seke_hf.simulate import SimulatedVLLM

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def cluster(s3):
    """A local cluster started after the S3 test server, so its workers inherit the endpoint and fake credentials
    from the environment, as workers of a real cluster find theirs."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def faces() -> tuple[datasets.Dataset, datasets.Dataset]:
    """Labelled faces (the simulator's truth) and the same faces with one level hidden per row."""
    full = labelled(18)
    return full, hide_one_level(full)


def annotator(server: SimulatedVLLM, cache_dir: Path, **kwargs) -> SVUAMCAnnotator:
    return SVUAMCAnnotator(base_url=server.base_url, cache_dir=str(cache_dir), progress=False, **kwargs)


def local_run(server: SimulatedVLLM, partial: datasets.Dataset, cache_dir: Path) -> tuple[datasets.Dataset, int]:
    """The single-process reference and the requests it needed."""
    server.reset_stats()
    ann = annotator(server, cache_dir)
    out = ann.annotate(partial, batch_size=8)
    ann.close()
    needed = server.stats()["requests"]
    server.reset_stats()
    return out, needed


def test_a_worker_killed_mid_batch_is_retried_and_pays_for_nothing_twice(faces, tmp_path):
    full, partial = faces
    with SimulatedVLLM(truth=full, latency=0.05) as server:
        reference, needed = local_run(server, partial, tmp_path / "local")
        ann = annotator(server, tmp_path / "ray", max_concurrency=4)
        annotated = annotate_with_ray(partial, ann, workers=1, batch_size=4)
        result: dict[str, object] = {}
        run = threading.Thread(target=lambda: result.update(shards=write_shards(annotated, str(tmp_path / "out"))))
        run.start()
        wait_until(lambda: server.stats()["completions"] >= needed // 3)
        server.pause()  # new requests are held: the worker is stuck mid-batch with requests in flight
        settle(server)
        held = server.stats()["in_flight"]
        stored = len(RequestCache(tmp_path / "ray" / CACHE_FILE))
        os.kill(actor_pid("AnnotateBatches"), signal.SIGKILL)
        server.reset_stats()
        server.resume()
        run.join(timeout=240)
        assert not run.is_alive()
        resent = server.stats()["requests"]
    assert held > 0 and 0 < stored < needed  # killed with answers stored and requests unanswered
    assert resent == needed - stored  # Ray re-ran the batch; every stored answer was read back, nothing repeated
    back = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert back.to_list() == reference.to_list()


def test_two_ray_workers_write_the_single_process_output_as_parquet_shards_on_s3(faces, tmp_path, monkeypatch, s3):
    full, partial = faces
    partial.save_to_disk(str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_API_KEY", "sim")
    with SimulatedVLLM(truth=full, latency=0.02) as server:
        common = ["annotate", "--data", str(tmp_path / "data"), "--base-url", server.base_url, "--no-progress"]
        assert main([*common, "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1")]) == 0
        needed = server.stats()["requests"]
        server.reset_stats()
        on_ray = ["--engine", "ray", "--workers", "2", "--batch-size", "3", "--max-concurrency", "4"]
        out = f"s3://{s3.bucket()}/annotated"
        assert main([*common, "--out", out, "--cache-dir", str(tmp_path / "c2"), *on_ray]) == 0
        sent = server.stats()["requests"]
    reference = datasets.load_from_disk(str(tmp_path / "local"))["train"]
    shards = sorted(path.rsplit("/", 1)[1] for path in s3.filesystem().ls(out.removeprefix("s3://") + "/data"))
    assert len(shards) > 1 and shards == [f"train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    back = datasets.load_dataset("parquet", data_files=f"{out}/data/train-*.parquet", split="train")
    assert back.features == reference.features  # ClassLabel and Image carried by the Parquet metadata
    assert back.to_list() == reference.to_list()  # same rows, same order, same values
    assert sent == needed  # every request once, whichever actor sent it


def test_a_missing_extra_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r'^annotation on Ray needs ray\[data\].*pip install "seke-hf\[ray\]"$'):
        require("ray", "annotation on Ray")


# -- helpers ---------------------------------------------------------------------------------------------------------
def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def settle(server: SimulatedVLLM, quiet: float = 0.5) -> None:
    """Wait until no request completes for `quiet` seconds (those past the pause have finished)."""
    last, since = server.stats()["completions"], time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = server.stats()["completions"]
        if now != last:
            last, since = now, time.monotonic()


def actor_pid(name: str) -> int:
    """The process of the Ray actor running `name` among this test process's descendants (Ray titles it so)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    todo, found = [os.getpid()], []
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                if name in (Path("/proc") / str(pid) / "cmdline").read_text():
                    found.append(pid)
            except OSError:
                pass
    assert len(found) == 1, f"expected one {name} actor, found {found}"
    return found[0]
