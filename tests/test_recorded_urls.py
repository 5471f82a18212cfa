"""Credentials in a URL never reach what we record (issue 17, item 4, first half): the evaluation report of a run
against the simulated vision LLM over real HTTP, and a release's card, licence and seke_release.json."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from publish_data import corpus

from seke_hf.evaluate import run, write_report
from seke_hf.publish import build_repo
from seke_hf.schema import FEATURES, empty_row
from seke_hf.simulate import SimulatedVLLM, truth_from_dataset
from seke_hf.synthetic.faces import draw_face
from seke_hf.urls import public_url, public_urls_in

SECRETS = ("s3cr3t-pw", "k3y-in-query", "alice")


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://alice:s3cr3t-pw@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://alice@llm.example/v1/", "https://llm.example/v1/"),
        ("https://llm.example/v1?api-key=k3y-in-query&deployment=gpt", "https://llm.example/v1?api-key=%2A%2A%2A&deployment=gpt"),
        ("https://llm.example/openai/v1", "https://llm.example/openai/v1"),
        ("not a url", "not a url"),
    ],
)  # fmt: skip
def test_public_url_drops_credentials_and_keeps_the_rest(url, expected):
    assert public_url(url) == expected


def test_urls_inside_text_are_cleaned_too():
    text = "served by http://alice:s3cr3t-pw@10.0.0.2:9000/v1 (and https://x.example/?token=k3y-in-query)"
    cleaned = public_urls_in(text)
    assert not any(secret in cleaned for secret in SECRETS)
    assert "http://10.0.0.2:9000/v1" in cleaned and "x.example" in cleaned


def _with_credentials(base_url: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{scheme}://alice:s3cr3t-pw@{rest}?api-key=k3y-in-query"


def test_the_evaluation_report_never_records_credentials(tmp_path):
    rows = [empty_row(f"rafdb/{i}", "rafdb", image=draw_face(i, "happiness", [], (64, 64))) for i in range(3)]
    for row in rows:
        row["expression"] = 4
    ds = datasets.Dataset.from_list(rows, features=FEATURES)
    with SimulatedVLLM(truth=truth_from_dataset(ds)) as server:
        plain = server.base_url
        base_url = f"http://alice:s3cr3t-pw@{plain.split('://', 1)[1]}"
        result = run(ds, "sim", base_url, tasks="expression", cache_dir=tmp_path / "cache", progress=False)
        assert server.stats()["requests"] > 0, "the run reached the server through the URL with credentials"
    assert result.info["endpoint"] == plain
    paths = write_report([result], tmp_path / "report", plots=False)
    for path in paths.values():
        text = Path(path).read_text()
        assert "127.0.0.1" in text or path.endswith(".md")
        assert not any(secret in text for secret in SECRETS), f"credentials in {path}"


def test_a_release_never_records_credentials(tmp_path):
    build_info = {"model": "m", "endpoint": _with_credentials("https://llm.example/v1"),
                  "notes": [f"retried against {_with_credentials('http://10.0.0.2:9000/v1')}"]}  # fmt: skip
    out = build_repo({"rafdb": corpus("rafdb", {"train": 2}, FEATURES)}, tmp_path / "r", build_info=build_info)
    for name in ("README.md", "LICENSE", "seke_release.json"):
        text = (out / name).read_text()
        assert not any(secret in text for secret in SECRETS), f"credentials in {name}"
    assert "https://llm.example/v1" in (out / "seke_release.json").read_text()
