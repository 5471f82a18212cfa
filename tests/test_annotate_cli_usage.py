"""`seke-hf annotate`'s usage line counts what was sent, as it was sent: retries and failures included, and says so
when `datasets` answered from its own cache and nothing was sent at all."""

from __future__ import annotations

import json
import logging
import re
import urllib.request

from annotate_helpers import hide_one_level, labelled

from seke_hf.cli import main
from seke_hf.simulate import SimulatedVLLM


def _usage(caplog) -> str:
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("usage: ")]
    return line


def test_the_usage_line_counts_retries_and_what_the_server_saw(tmp_path, caplog):
    full = labelled(6)
    saved = tmp_path / "saved"
    hide_one_level(full).save_to_disk(saved)
    with SimulatedVLLM(truth=full) as server:
        inject = json.dumps({"inject": {"server_error": 3}}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/control/faults", data=inject, method="POST"))
        argv = ["annotate", "--data", str(saved), "--out", str(tmp_path / "out"), "--base-url", server.base_url,
                "--cache-dir", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
        with caplog.at_level(logging.INFO, logger="seke_hf"):
            assert main(argv) == 0
        first = _usage(caplog)
        seen = server.stats()
        sent = int(re.search(r"(\d+) requests sent", first).group(1))
        assert sent == seen["requests"] > 0  # errors answered by the server are requests sent too
        assert "3 retries, 0 failed" in first

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="seke_hf"):
            assert main([*argv[:4], str(tmp_path / "again"), *argv[5:]]) == 0
        assert "no request" in _usage(caplog) and server.stats()["requests"] == seen["requests"]
