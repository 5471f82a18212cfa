"""SVUAMCAnnotator over real HTTP against the simulated vision LLM: filling, caching, faults, processes."""

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
from annotate_helpers import HIDDEN, hide_one_level, labelled

from seke_hf import SVUAMCAnnotator
from seke_hf.llm import RequestCache
from seke_hf.schema import AUS, EXPRESSIONS, FEATURES
from seke_hf.simulate import SimulatedVLLM


def annotator(server: SimulatedVLLM, cache_dir, **kwargs) -> SVUAMCAnnotator:
    kwargs.setdefault("progress", False)
    return SVUAMCAnnotator(base_url=server.base_url, cache_dir=str(cache_dir), **kwargs)


def annotate(ds: datasets.Dataset, ann: SVUAMCAnnotator, **kwargs) -> datasets.Dataset:
    kwargs.setdefault("batch_size", 8)
    return ds.map(ann, batched=True, load_from_cache_file=False, **kwargs)


@pytest.fixture(scope="module")
def full() -> datasets.Dataset:
    return labelled(18)


@pytest.fixture(scope="module")
def partial(full) -> datasets.Dataset:
    return hide_one_level(full)


@pytest.fixture
def server(full):
    with SimulatedVLLM(truth=full) as server:
        yield server


def test_fills_each_missing_level_and_never_touches_human_labels(server, full, partial, tmp_path):
    out = annotate(partial, annotator(server, tmp_path))
    assert out.features["expression"] == FEATURES["expression"]  # ClassLabel kept
    assert out.data.column("image").equals(partial.data.column("image"))  # image bytes untouched, not re-encoded
    assert set(out.column_names) >= {"provenance", "uncertainty", "descriptions", "mc_samples", "requests"}
    assert server.stats()["requests"] == sum(out["requests"])
    correct, rejected = dict.fromkeys(HIDDEN, 0), 0
    for before, after, truth in zip(partial, out, full, strict=True):
        hidden = {level for level in HIDDEN if after["provenance"][level] != "human"}
        assert len(hidden) == 1
        (level,) = hidden
        if after["status"] == "rejected":  # a generated label the human labels contradict, or too uncertain
            assert after["provenance"][level] == "missing" and after["status_reason"]
            rejected += 1
            continue
        assert after["status"] == "accepted", after["status_reason"]
        assert after["provenance"][level] == "generated"
        assert after["uncertainty"][level] is not None and 0 <= after["uncertainty"][level] <= 1
        assert after["descriptions"][level]
        # Every level, human ones included, gets its own text, so each instruction answer explains its own level.
        texts = after["descriptions"]
        assert all(texts[lvl] for lvl in HIDDEN) and len({texts[lvl] for lvl in HIDDEN}) == len(HIDDEN)
        assert "valence" in texts["valence_arousal"].lower()
        assert after["mc_samples"] >= 5 and after["requests"] >= 2  # the greedy answer and the first votes
        for other in set(HIDDEN) - {level}:
            assert after["provenance"][other] == "human" and after["uncertainty"][other] is None
        # Human labels and untouched columns pass through unchanged.
        for column in ("sample_id", "source", "subject", "frame", "au_intensity"):
            assert after[column] == before[column]
        if level != "expression":
            assert after["expression"] == before["expression"]
        if level != "valence_arousal":
            assert (after["valence"], after["arousal"]) == (before["valence"], before["arousal"])
        if level != "aus":
            assert after["aus"] == before["aus"]
        # What was generated is (mostly) right: the simulated model sees the truth through noise.
        if level == "expression":
            correct[level] += after["expression"] == truth["expression"]
        elif level == "valence_arousal":
            error = abs(after["valence"] - truth["valence"]) + abs(after["arousal"] - truth["arousal"])
            correct[level] += error < 0.3
        else:
            assert set(after["aus"].values()) <= {0, 1}
            correct[level] += sum(after["aus"][au] == truth["aus"][au] for au in AUS) >= len(AUS) - 2
    assert all(count >= 4 for count in correct.values()) and rejected <= 3, (correct, rejected)  # 6 rows per level


def test_fully_labelled_rows_cost_nothing(server, full, tmp_path):
    out = annotate(full.select(range(4)), annotator(server, tmp_path))
    assert server.stats()["requests"] == 0
    assert out["status"] == ["accepted"] * 4 and out["requests"] == [0] * 4
    assert all(set(p.values()) == {"human"} for p in out["provenance"])


def test_plain_image_dataset_without_label_columns(server, full, tmp_path):
    plain = full.select(range(6)).select_columns(["image", "sample_id"]).rename_column("image", "picture")
    ann = annotator(server, tmp_path, image_column="picture")
    out = annotate(plain, ann, features=ann.output_features(plain.features))
    assert out.features["expression"] == datasets.ClassLabel(names=EXPRESSIONS)
    assert out["sample_id"] == plain["sample_id"]
    accepted = [(row, truth) for row, truth in zip(out, full, strict=False) if row["status"] == "accepted"]
    assert len(accepted) >= 4
    for row, _ in accepted:  # acceptance is per level: a level given up is missing, with the reason
        assert "generated" in row["provenance"].values() and set(row["provenance"].values()) <= {"generated", "missing"}
        assert ("missing" in row["provenance"].values()) == ("left missing" in row["status_reason"])
        if row["provenance"]["aus"] == "generated":
            assert set(row["aus"].values()) <= {0, 1}
    for row in out:
        if row["status"] == "rejected":  # the levels contradicted each other: nothing is kept, the reason is
            assert set(row["provenance"].values()) == {"missing"} and row["status_reason"]
            assert row["expression"] == -1 and row["valence"] is None and set(row["aus"].values()) == {-1}
    described = [(row, truth) for row, truth in accepted if row["provenance"]["expression"] == "generated"]
    assert len(described) >= 3
    assert sum(row["expression"] == truth["expression"] for row, truth in described) >= len(described) - 1


def test_a_corrupt_image_fails_its_row_only_and_is_named(server, full, tmp_path):
    good = full.select(range(2)).cast_column("image", datasets.Image(decode=False))
    cells = [*good["image"], {"bytes": b"not an image", "path": "faces/broken.jpg"}]
    ds = datasets.Dataset.from_dict({"image": cells}, features=datasets.Features({"image": datasets.Image()}))
    out = annotate(ds, annotator(server, tmp_path))
    assert "failed" not in out["status"][:2] and out["status"][2] == "failed"
    assert "faces/broken.jpg" in out["status_reason"][2]
    assert set(out["provenance"][2].values()) == {"missing"}


def test_rerun_is_served_from_the_cache_with_identical_output(server, partial, tmp_path):
    first = annotate(partial, annotator(server, tmp_path))
    sent = server.stats()["requests"]
    assert sent > 0
    again = annotate(partial, annotator(server, tmp_path))
    assert server.stats()["requests"] == sent  # nothing sent twice
    assert again.to_list() == first.to_list()
    assert again["requests"] == first["requests"]  # requests the example needed, cached or not


def test_faults_cost_a_choice_or_a_retry_and_failures_are_retried_later(full, partial, tmp_path):
    rows = partial.select(range(6))
    with SimulatedVLLM(truth=full, retry_after=0.1, timeout_delay=3.0) as server:
        server.inject("rate_limit", 2)
        server.inject("server_error", 1)
        server.inject("truncate", 3)
        # votes only: a greedy answer is one choice, and one choice cut short is a whole answer cut short (failed,
        # retried by the next run); cut choices among the votes only lose a vote
        out = annotate(rows, annotator(server, tmp_path / "a", max_concurrency=2, verify=False))
        stats = server.stats()
        assert stats["faults"] == {"rate_limit": 2, "server_error": 1, "truncate": 3}
        assert stats["errors"] == {"429": 2, "500": 1}
        assert "failed" not in out["status"], out["status_reason"]  # retried; a truncated choice only loses a vote

        # A request that keeps failing marks its example `failed` (nothing generated); a later run retries it.
        server.reset_stats()
        server.inject("timeout", 4)  # the greedy and the votes request run at once: each may take some
        flaky = annotator(server, tmp_path / "b", timeout=0.5, max_retries=1, backoff=0.05, max_concurrency=1)
        failed = annotate(rows.select(range(1)), flaky)
        assert failed["status"] == ["failed"] and "gave up after 2 attempts" in failed["status_reason"][0]
        assert set(failed["provenance"][0].values()) <= {"human", "missing"}
        retried = annotate(rows.select(range(1)), annotator(server, tmp_path / "b"))
        assert retried["status"] == ["accepted"]


def test_servers_refusing_n_or_schemas_are_still_sampled(full, partial, tmp_path):
    rows = partial.select(range(6))
    with SimulatedVLLM(truth=full, max_n=1, structured_output=False) as server:
        out = annotate(rows, annotator(server, tmp_path))
        stats = server.stats()
    assert "failed" not in out["status"] and out["status"].count("accepted") >= 4, out["status_reason"]
    # After learning, one choice per request: (400s while learning) + one request per choice drawn.
    assert stats["choices"] == stats["completions"]
    assert stats["completions"] == sum(out["requests"])
    assert sum(out["requests"]) >= sum(out["mc_samples"])


def test_num_proc_2_matches_a_single_process_and_its_usage_is_counted(server, partial, tmp_path):
    single = annotate(partial, annotator(server, tmp_path / "one"))
    server.reset_stats()
    started = time.time()
    ann = annotator(server, tmp_path / "two")
    double = annotate(partial, ann, num_proc=2)
    assert double.to_list() == single.to_list()
    fetched = ann.backend.fetched_since(started)  # what both workers fetched, read back from the shared cache
    stats = server.stats()
    assert fetched.requests == stats["completions"] == sum(double["requests"])
    assert (fetched.usage.prompt_tokens, fetched.usage.completion_tokens) == (
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )


FINGERPRINTS = textwrap.dedent(
    """
    import json, sys
    from datasets.fingerprint import Hasher
    from seke_hf.annotate import svuamc
    from seke_hf import SVUAMCAnnotator
    base = dict(base_url="http://127.0.0.1:9/v1", progress=False)
    hashes = {
        "base": Hasher.hash(SVUAMCAnnotator(**base)),
        "runtime": Hasher.hash(SVUAMCAnnotator(**base, api_key="sk-other", max_concurrency=3, cache_dir="/x")),
        "model": Hasher.hash(SVUAMCAnnotator(**base, model="gpt-4.1")),
        "temperature": Hasher.hash(SVUAMCAnnotator(**base, temperature=0.5)),
        "max_samples": Hasher.hash(SVUAMCAnnotator(**base, max_samples=8)),
        "prompt": Hasher.hash(SVUAMCAnnotator(**base, knowledge="other knowledge")),
        "endpoint": Hasher.hash(SVUAMCAnnotator(base_url="http://127.0.0.1:10/v1", progress=False)),
    }
    svuamc.VERSION = "next"
    hashes["version"] = Hasher.hash(SVUAMCAnnotator(**base))
    print(json.dumps(hashes))
    """
)


def test_fingerprint_is_stable_across_processes_and_follows_what_shapes_outputs():
    runs = [
        json.loads(
            subprocess.run([sys.executable, "-c", FINGERPRINTS], capture_output=True, text=True, check=True).stdout
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    hashes = runs[0]
    assert hashes["runtime"] == hashes["base"]
    changed = {k: v for k, v in hashes.items() if k not in ("base", "runtime")}
    assert len(set(changed.values()) | {hashes["base"]}) == len(changed) + 1


RESUMABLE_RUN = textwrap.dedent(
    """
    import sys
    import datasets
    from seke_hf import SVUAMCAnnotator
    ds = datasets.load_from_disk(sys.argv[1])
    annotator = SVUAMCAnnotator(base_url=sys.argv[2], cache_dir=sys.argv[3], max_concurrency=2, progress=False)
    out = ds.map(annotator, batched=True, batch_size=4, load_from_cache_file=False)
    out.save_to_disk(sys.argv[4])
    """
)


def test_a_killed_run_resumes_without_sending_any_request_twice(full, partial, tmp_path):
    partial.save_to_disk(tmp_path / "data")
    with SimulatedVLLM(truth=full, latency=0.1) as server:
        clean = annotate(partial, annotator(server, tmp_path / "clean"))
        total = server.stats()["requests"]
        server.reset_stats()

        args = [sys.executable, "-c", RESUMABLE_RUN, str(tmp_path / "data"), server.base_url, str(tmp_path / "cache")]
        child = subprocess.Popen([*args, str(tmp_path / "killed")], env=os.environ.copy())
        deadline = time.monotonic() + 60
        while server.stats()["completions"] < total // 3 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        stored = len(RequestCache(tmp_path / "cache" / "requests.sqlite"))
        assert 0 < stored < total

        server.reset_stats()
        subprocess.run([*args, str(tmp_path / "resumed")], env=os.environ.copy(), check=True)
        assert server.stats()["requests"] == total - stored  # every stored answer reused, nothing repeated
    resumed = datasets.load_from_disk(str(tmp_path / "resumed"))
    assert resumed.to_list() == clean.to_list()


def test_prefetch_runs_ahead_of_map_without_repeating_a_request(full, partial, tmp_path):
    with SimulatedVLLM(truth=full, latency=0.05) as server:
        plain = annotate(partial, annotator(server, tmp_path / "plain"), batch_size=4)
        needed = server.stats()["requests"]
        server.reset_stats()
        ann = annotator(server, tmp_path / "prefetched", max_concurrency=8)
        ann.prefetch(partial)
        prefetched = annotate(partial, ann, batch_size=4)
        sent = server.stats()["requests"]
        tally = ann.backend.tally
        ann.close()
    assert prefetched.to_list() == plain.to_list()
    assert sent == needed and tally.reused >= needed  # map's requests answered by the prefetch (in flight or stored)
    assert tally.cache_hits == 0  # nothing an earlier run paid for: the summary must not claim savings


def test_identical_rows_in_a_batch_share_their_requests(server, partial, tmp_path):
    one = partial.select([0])
    single = annotate(one, annotator(server, tmp_path / "one"))
    server.reset_stats()
    tripled = annotate(partial.select([0, 0, 0]), annotator(server, tmp_path / "three"))
    assert server.stats()["requests"] == single["requests"][0]
    assert tripled.to_list() == single.to_list() * 3
