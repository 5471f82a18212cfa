"""Test-wide isolation: every cache and Hub setting points into a temporary folder before `datasets` is imported."""

from __future__ import annotations

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SESSION_DIR = tempfile.mkdtemp(prefix="seke_hf_tests_")
os.environ["HF_HOME"] = os.path.join(_SESSION_DIR, "hf_home")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_DIR, "hf_datasets")
os.environ["SEKE_HF_CACHE"] = os.path.join(_SESSION_DIR, "seke_hf_cache")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)
os.environ.pop("HF_TOKEN", None)
# The local Hub-protocol test server (tests/hub_server.py) listens here; HF_ENDPOINT must be set before `datasets`
# and `huggingface_hub` are imported, so the port is chosen now and the server bound to it by a fixture.
os.environ["SEKE_TEST_HUB_PORT"] = str(_free_port())
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{os.environ['SEKE_TEST_HUB_PORT']}"

import pytest  # noqa: E402


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh `datasets` cache for one test, so caching behaviour is observed from a cold start."""
    return str(tmp_path / "hf_cache")


@pytest.fixture(scope="session")
def s3():
    """An S3-protocol server on 127.0.0.1 (moto) with fake credentials in the environment (tests/s3_server.py)."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (in the dev extra)")
    from s3_server import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def corpora_root(tmp_path_factory):
    """The six small synthetic corpora under one ROOT, written once for the FEID/FEAB tests (read only)."""
    from seke_hf.synthetic.corpora import write_corpora

    root = tmp_path_factory.mktemp("corpora") / "ROOT"
    write_corpora(root, seed=0, small=True)
    return root
