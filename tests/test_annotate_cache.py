"""The request cache under real concurrency: processes that open and write one fresh cache file at the same moment."""

from __future__ import annotations

import multiprocessing

from seke_hf.annotate import RequestCache

WRITERS, VALUES = 4, 40


def _write(path: str, worker: int, barrier) -> None:
    barrier.wait()  # every process opens the fresh file at the same moment, as `map(num_proc=...)` workers do
    cache = RequestCache(path)
    for i in range(VALUES):
        cache.put(f"{worker}-{i}", {"worker": worker, "i": i})
        assert cache.get(f"{worker}-{i}") == {"worker": worker, "i": i}
    cache.close()


def test_processes_opening_one_fresh_cache_together_lose_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(5):  # the race is at creation: repeat it on fresh files
        path = str(tmp_path / f"requests-{attempt}.sqlite")
        barrier = context.Barrier(WRITERS)
        workers = [context.Process(target=_write, args=(path, w, barrier)) for w in range(WRITERS)]
        for p in workers:
            p.start()
        for p in workers:
            p.join(60)
        assert [p.exitcode for p in workers] == [0] * WRITERS
        cache = RequestCache(path)
        assert len(cache) == WRITERS * VALUES
        cache.close()
