"""The shared request cache on an S3-protocol server (moto, on 127.0.0.1): write-once, verified, race-safe."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

from annotate_helpers import hide_one_level, labelled
from s3_server import FAKE_SECRET

from seke_hf import SVUAMCAnnotator
from seke_hf.cli import main
from seke_hf.llm.cache import RequestCache, request_key
from seke_hf.llm.shared_cache import SharedRequestCache
from seke_hf.simulate import SimulatedVLLM

KEY = request_key({"model": "m", "messages": ["hello"]})


def answer(text: str) -> dict:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "cached_tokens": 0}
    return {"choices": [text], "usage": usage, "requests": 1}


def test_an_answer_is_written_once_and_read_back_anywhere(s3, tmp_path):
    url = f"s3://{s3.bucket()}/cache"
    first = SharedRequestCache(url, local=RequestCache(tmp_path / "a.sqlite"))
    assert first.get(KEY) is None
    first.put(KEY, answer("happiness"))
    first.put(KEY, answer("sadness"))  # a second writer of the same request: the first answer stays
    other = SharedRequestCache(url, local=RequestCache(tmp_path / "b.sqlite"))
    assert other.get(KEY) == answer("happiness") and len(other) == 1
    assert other.local.get(KEY) == answer("happiness")  # read through into this machine's SQLite layer
    late = SharedRequestCache(url, local=False)
    late.put(KEY, answer("fear"))
    assert late.get(KEY) == answer("happiness")
    assert [v["choices"] for v in late.values_since(0)] == [["happiness"]]


def test_a_damaged_entry_is_missing_not_wrong_and_the_next_put_replaces_it(s3, caplog):
    url = f"s3://{s3.bucket()}/cache"
    cache = SharedRequestCache(url, local=False)
    cache.put(KEY, answer("happiness"))
    path = cache._path(KEY)
    stored = json.loads(s3.filesystem().cat_file(path))
    torn = json.dumps({**stored, "value": stored["value"].replace("happiness", "sadness")})
    s3.filesystem().pipe_file(path, torn.encode())  # the value no longer matches its checksum
    assert cache.get(KEY) is None
    assert "damaged" in caplog.text
    s3.filesystem().pipe_file(path, b'{"key": "tru')  # a torn write
    assert cache.get(KEY) is None
    cache.put(KEY, answer("anger"))
    assert cache.get(KEY) == answer("anger")


RACE = textwrap.dedent(
    """
    import sys
    from seke_hf.llm.cache import request_key
    from seke_hf.llm.shared_cache import SharedRequestCache
    url, name = sys.argv[1], sys.argv[2]
    cache = SharedRequestCache(url, local=False)
    for i in range(20):
        cache.put(request_key({"i": i}), {"writer": name, "i": i})
    print(",".join(cache.get(request_key({"i": i}))["writer"] for i in range(20)))
    """
)


def test_two_processes_writing_the_same_keys_at_once_leave_one_intact_answer_each(s3):
    url = f"s3://{s3.bucket()}/cache"
    racers = [
        subprocess.Popen([sys.executable, "-c", RACE, url, name], stdout=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    seen = [racer.communicate(timeout=120)[0].strip().split(",") for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert seen[0] == seen[1]  # both processes read the same winner for every key, whoever wrote it
    cache = SharedRequestCache(url, local=False)
    assert len(cache) == 20
    assert [cache.get(request_key({"i": i}))["writer"] for i in range(20)] == seen[0]


def test_credentials_stay_out_of_the_repr_and_the_keys(s3):
    url = f"s3://{s3.bucket()}/cache"
    cache = SharedRequestCache(url, local=False, storage_options={"secret": FAKE_SECRET, "key": "id"})
    cache.put(KEY, answer("neutral"))
    assert FAKE_SECRET not in repr(cache) and FAKE_SECRET not in "".join(cache)
    assert FAKE_SECRET not in s3.filesystem().cat_file(cache._path(KEY)).decode()
    assert pickle.loads(pickle.dumps(cache)).get(KEY) == answer("neutral")  # workers get what they need to connect
    assert repr(SharedRequestCache("s3://user:pw@bucket/x", local=False)) == "SharedRequestCache('s3://bucket/x')"


ANNOTATE = textwrap.dedent(
    """
    import sys
    import datasets
    from seke_hf import SVUAMCAnnotator
    data, base_url, cache_url = sys.argv[1:4]
    annotator = SVUAMCAnnotator(base_url=base_url, cache_dir=cache_url, progress=False, max_concurrency=4)
    out = annotator.annotate(datasets.load_from_disk(data), batch_size=6)
    annotator.close()
    print(sum(out["requests"]))
    """
)


def test_two_machines_annotating_at_once_share_their_answers_and_a_third_pays_nothing(s3, tmp_path):
    full = labelled(12)
    partial = hide_one_level(full)
    partial.save_to_disk(str(tmp_path / "data"))
    url = f"s3://{s3.bucket()}/seke-cache"
    with SimulatedVLLM(truth=full, latency=0.02) as server:
        machines = []
        for name in ("a", "b"):  # each with its own local cache folder, as on two machines
            env = {**os.environ, "SEKE_HF_CACHE": str(tmp_path / name)}
            args = [sys.executable, "-c", ANNOTATE, str(tmp_path / "data"), server.base_url, url]
            machines.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True))
        needed = [int(m.communicate(timeout=240)[0].split()[-1]) for m in machines]
        assert all(m.returncode == 0 for m in machines)
        raced = server.stats()["requests"]
        server.reset_stats()
        third = SVUAMCAnnotator(base_url=server.base_url, cache_dir=url, progress=False)
        out = third.annotate(partial, batch_size=6)
        third.close()
        assert server.stats()["requests"] == 0  # every answer read from the shared store
    assert needed[0] <= raced <= needed[0] + needed[1]  # a lost race costs a duplicate request at most
    assert all(status == "accepted" for status in out["status"])
    assert len(SharedRequestCache(url, local=False)) == sum(out["requests"]) > 0


def test_cache_push_and_pull_copy_answers_between_sqlite_and_the_shared_store(s3, tmp_path):
    local = RequestCache.in_folder(tmp_path / "here")
    for i in range(5):
        local.put(request_key({"i": i}), answer(f"a{i}"))
    local.close()
    url = f"s3://{s3.bucket()}/shared"
    SharedRequestCache(url, local=False).put(request_key({"i": 0}), answer("first"))  # already shared: stays
    assert main(["cache", "push", url, "--cache-dir", str(tmp_path / "here")]) == 0
    shared = SharedRequestCache(url, local=False)
    assert len(shared) == 5 and shared.get(request_key({"i": 0})) == answer("first")
    assert shared.get(request_key({"i": 3})) == answer("a3")
    assert main(["cache", "pull", url, "--cache-dir", str(tmp_path / "there")]) == 0
    there = RequestCache.in_folder(tmp_path / "there")
    assert len(there) == 5 and there.get(request_key({"i": 4})) == answer("a4")
