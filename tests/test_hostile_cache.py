"""A hostile request cache (issue 17, items 5, 6 and 7): truncated answers, a read-only file, a corrupt file, bad
entries. An answer paid for is never lost, a broken cache never stops a run without saying which file and what to do,
and nothing incomplete is ever cached as if it were an answer."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess

import datasets
import pytest
from annotate_helpers import hide_one_level, labelled

from seke_hf import SVUAMCAnnotator
from seke_hf.llm import CacheError, RequestCache
from seke_hf.llm.cache import CACHE_FILE
from seke_hf.simulate import SimulatedVLLM


@pytest.fixture(scope="module")
def full() -> datasets.Dataset:
    return labelled(6)


@pytest.fixture(scope="module")
def partial(full) -> datasets.Dataset:
    return hide_one_level(full)


def annotate(server: SimulatedVLLM, rows: datasets.Dataset, cache_dir, **kwargs) -> datasets.Dataset:
    kwargs.setdefault("progress", False)
    annotator = SVUAMCAnnotator(base_url=server.base_url, cache_dir=str(cache_dir), **kwargs)
    try:
        return rows.map(annotator, batched=True, batch_size=8, load_from_cache_file=False)
    finally:
        annotator.close()


# -- 5. truncated answers ------------------------------------------------------------------------------------------


def test_truncated_answers_are_failures_to_retry_never_cached_verdicts(full, partial, tmp_path):
    rows = partial.select(range(3))
    with SimulatedVLLM(truth=full) as server:
        server.set_faults(truncate=1.0)  # every choice cut short: finish_reason "length"
        cut = annotate(server, rows, tmp_path / "cache", max_retries=0)
        assert set(cut["status"]) == {"failed"}, cut["status"]
        assert all("truncated" in reason for reason in cut["status_reason"]), cut["status_reason"]
        server.set_faults(truncate=0.0)
        server.reset_stats()
        healthy = annotate(server, rows, tmp_path / "cache")
        assert server.stats()["requests"] > 0  # nothing truncated was served from the cache
    assert healthy["status"] == ["accepted"] * 3, healthy["status_reason"]


def test_a_few_truncated_choices_cost_a_choice_not_the_row(full, partial, tmp_path):
    with SimulatedVLLM(truth=full) as server:
        server.inject("truncate", 2)
        # votes only: a single-choice (greedy) answer cut short is a whole answer cut short, a failure to retry
        out = annotate(server, partial.select(range(3)), tmp_path / "cache", verify=False)
    assert "failed" not in out["status"], out["status_reason"]


# -- 6. a read-only cache ------------------------------------------------------------------------------------------


@pytest.fixture
def immutable(tmp_path):
    """Makes files immutable (`chattr +i`: read-only even for root, as a read-only mount would be)."""
    made = []

    def make(path):
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_read_only_cache_is_refused_before_anything_is_sent(full, partial, tmp_path, immutable):
    with SimulatedVLLM(truth=full) as server:
        annotate(server, partial.select(range(1)), tmp_path / "cache")
        RequestCache(tmp_path / "cache" / CACHE_FILE).checkpoint()  # everything in the main file, none in the WAL
        immutable(tmp_path / "cache" / CACHE_FILE)
        server.reset_stats()
        with pytest.raises(CacheError, match=rf"{CACHE_FILE}.* not writable.*cache_dir") as error:
            annotate(server, partial.select(range(1, 4)), tmp_path / "cache")
        assert server.stats()["requests"] == 0
    assert str(tmp_path / "cache") in str(error.value)


def test_a_storage_error_keeps_the_answer_for_this_run(tmp_path, caplog):
    cache = RequestCache(tmp_path / CACHE_FILE, timeout=0.1)
    cache.put("stored", {"choices": ["a"]})
    blocker = sqlite3.connect(tmp_path / CACHE_FILE, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for longer than we wait
    with caplog.at_level(logging.WARNING):
        cache.put("paid", {"choices": ["b"]})  # no exception: the answer was paid for
        cache.put("paid too", {"choices": ["c"]})
    assert cache.get("paid") == {"choices": ["b"]} and cache.get("stored") == {"choices": ["a"]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(tmp_path / CACHE_FILE) in warnings[0] and "memory" in warnings[0]
    blocker.execute("ROLLBACK")
    blocker.close()
    cache.close()


# -- 7. a corrupt cache, bad entries -------------------------------------------------------------------------------


def test_a_corrupt_cache_file_is_moved_aside_with_a_warning_naming_it(full, partial, tmp_path, caplog):
    path = tmp_path / "cache" / CACHE_FILE
    path.parent.mkdir()
    path.write_bytes(b"this is not an SQLite database" * 100)
    with SimulatedVLLM(truth=full) as server, caplog.at_level(logging.WARNING):
        out = annotate(server, partial.select(range(2)), tmp_path / "cache")
    assert out["status"] == ["accepted"] * 2
    (aside,) = [p for p in path.parent.iterdir() if p.name.startswith(f"{CACHE_FILE}.unreadable")]
    assert aside.read_bytes().startswith(b"this is not an SQLite database")
    assert any(str(path) in r.getMessage() and aside.name in r.getMessage() for r in caplog.records)
    assert len(RequestCache(path)) > 0  # a fresh cache took its place


def test_bad_entries_are_misses_asked_again_and_overwritten(full, partial, tmp_path, caplog):
    rows = partial.select(range(3))
    with SimulatedVLLM(truth=full) as server:
        first = annotate(server, rows, tmp_path / "cache")
        db = sqlite3.connect(tmp_path / "cache" / CACHE_FILE, isolation_level=None)
        keys = [key for (key,) in db.execute("SELECT key FROM responses ORDER BY key LIMIT 2")]
        db.execute('UPDATE responses SET value = \'{"choices": ["cut\' WHERE key = ?', (keys[0],))
        value = json.loads(db.execute("SELECT value FROM responses WHERE key = ?", (keys[1],)).fetchone()[0])
        del value["usage"]
        db.execute("UPDATE responses SET value = ? WHERE key = ?", (json.dumps(value), keys[1]))
        server.reset_stats()
        with caplog.at_level(logging.WARNING):
            again = annotate(server, rows, tmp_path / "cache")
        assert server.stats()["requests"] == 2  # exactly the two bad entries were asked again
    assert again.to_list() == first.to_list()
    for key in keys:
        stored = json.loads(db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()[0])
        assert "usage" in stored and stored["choices"]
    db.close()
