"""Publishing a FEID-shaped release with `seke_hf.publish.push`, against `datasets`' own `push_to_hub` of the same
configs, to the local Hub-protocol test server (tests/hub_server.py) in one process.

    /tmp/venv/bin/python bench/publish.py [--rows-per-corpus 400] [--size 112]

Six corpora of synthetic faces, each its own config, plus `all`. Baseline: `DatasetDict.push_to_hub(config_name=...)`
once per config (7 commits; `all` stores every image a second time). seke-hf: `build_repo` + `push` (one commit; `all`
points at the per-corpus shards). Reported: bytes uploaded, commits, wall time; then a re-push of unchanged content
(rebuilt from the same datasets: bytes uploaded and time) and a push whose commit failed, run again (bytes re-sent).
Both sides include writing the Parquet files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path


def _setup_environment() -> None:
    """As tests/conftest.py: HF_ENDPOINT and caches must be set before `datasets` is imported."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tempfile.mkdtemp(prefix="seke_bench_publish_")
    os.environ.update(
        SEKE_TEST_HUB_PORT=str(port), HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_DISABLE_XET="1",
        HF_HOME=f"{work}/hf_home", HF_DATASETS_CACHE=f"{work}/datasets", HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )  # fmt: skip
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-corpus", type=int, default=400)
    parser.add_argument("--size", type=int, default=112, help="face image side in pixels")
    args = parser.parse_args()
    _setup_environment()

    import datasets
    from hub_server import shared_server

    from seke_hf.corpora import CORPORA
    from seke_hf.publish import build_repo, push
    from seke_hf.schema import FEATURES, empty_row
    from seke_hf.synthetic.faces import face_bytes, seed_of

    datasets.disable_progress_bars()
    hub = shared_server()
    token = "hf_bench_token"
    hub.add_user("bench", token)

    def corpus(source: str) -> datasets.DatasetDict:
        def rows(split: str, n: int):
            for i in range(n):
                image = {"bytes": face_bytes(seed_of(source, split, i), size=(args.size, args.size)), "path": None}
                row = empty_row(f"{source}/{split}_{i:05d}", source, image=image)
                row["expression"] = i % 7
                yield row

        n = args.rows_per_corpus
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_list(list(rows("train", n * 9 // 10)), features=FEATURES),
            "test": datasets.Dataset.from_list(list(rows("test", n // 10)), features=FEATURES),
        })  # fmt: skip

    parts = {source: corpus(source) for source in CORPORA}
    whole = datasets.DatasetDict({s: datasets.concatenate_datasets([p[s] for p in parts.values()]) for s in ("train", "test")})  # fmt: skip # noqa: E501
    configs = {"all": whole, **parts}
    rows = sum(len(d) for d in whole.values())

    def measure(run) -> tuple[float, int, int]:
        hub.clear_log()
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        sent = sum(size for _, _, size in hub.lfs_uploads)
        commits = sum(1 for method, path, _ in hub.requests if method == "POST" and "/commit/" in path)
        return seconds, sent, commits

    def baseline() -> None:
        for name, dd in configs.items():
            dd.push_to_hub("bench/baseline", config_name=name, token=token, private=True)

    with tempfile.TemporaryDirectory() as tmp:
        base = measure(baseline)
        folder = Path(tmp) / "release"
        ours = measure(lambda: push(build_repo(configs, folder), "bench/feid", token=token))
        again = measure(lambda: push(build_repo(configs, folder), "bench/feid", token=token))
        hub.fail_commits = 1
        with contextlib.suppress(Exception):
            push(folder, "bench/feid-interrupted", token=token)
        resumed = measure(lambda: push(folder, "bench/feid-interrupted", token=token))

    mb = 1e6
    print(f"{rows} rows ({args.rows_per_corpus} per corpus, {args.size}x{args.size} faces), 7 configs")
    print("| run | uploaded MB | commits | seconds | vs baseline (bytes / time) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| datasets push_to_hub, once per config | {base[1] / mb:.2f} | {base[2]} | {base[0]:.2f} | 1.00 / 1.00 |")
    for label, (seconds, sent, commits) in (
        ("seke-hf build_repo + push", ours),
        ("seke-hf build_repo + push again, unchanged", again),
        ("seke-hf push run again after a failed commit", resumed),
    ):
        print(f"| {label} | {sent / mb:.2f} | {commits} | {seconds:.2f} | "
              f"{sent / base[1]:.2f} / {seconds / base[0]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
