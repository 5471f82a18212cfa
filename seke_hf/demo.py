"""The whole system on synthetic faces, offline and keyless: what `seke-hf demo` runs.

Synthetic faces (drawn by code, clearly not people) are written in the raw layouts of the six corpora; a simulated
vision LLM that knows their labels answers over real HTTP on 127.0.0.1; FEID and FEAB are then built exactly as
from licensed copies: real loaders, SV-UAMC with its request cache, chat columns, the Hub layout read back with
plain `datasets`, and an evaluation of the simulated model on FEAB. The printed cost is what the same requests
would cost on GPT-4o at the annotator's configured prices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from seke_hf.corpora import CORPORA
from seke_hf.selection import SelectionParams

logger = logging.getLogger(__name__)

DEMO_MODEL = "gpt-4o"
"""The model name sent to the simulator, so prices and prompts are those of a real GPT-4o run."""
DEMO_API_KEY = "sk-demo-simulated-not-a-key"
"""The simulator checks no key; the openai client wants one."""
DEMO_PORT = 8737
"""The request cache is keyed by endpoint, so a re-run of the demo must find the simulator where it was."""


@dataclass
class DemoResult:
    out: Path
    summary: dict[str, Any]
    reloaded_rows: dict[str, int]
    report_paths: dict[str, str]
    evaluation_markdown: str
    server_stats: dict[str, Any]


def run_demo(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    small: bool = False,
    progress: bool = True,
    port: int = DEMO_PORT,
    stages: Callable[[str], None] | None = None,
) -> DemoResult:
    """Write synthetic corpora under `out/corpora`, build FEID/FEAB into `out/build`, evaluate into `out/report`.

    `progress` shows the request progress bars; `stages` receives one line per stage (default: logged)."""
    from seke_hf import feid
    from seke_hf.annotate import SVUAMCAnnotator
    from seke_hf.evaluate import run as evaluate
    from seke_hf.evaluate import write_report
    from seke_hf.evaluate.report import markdown_report
    from seke_hf.llm.usage import PRICE_TABLE
    from seke_hf.pipeline import build_datasets
    from seke_hf.simulate import SimulatedVLLM, truth_from_dataset
    from seke_hf.synthetic.corpora import write_corpora

    out = Path(out)
    corpora_root = out / "corpora"
    say = stages or logger.info
    write_corpora(corpora_root, seed=seed, small=small)
    say(f"synthetic corpora: faces in the raw layouts of {', '.join(CORPORA)} under {corpora_root}")

    # The simulator's hidden truth: the human labels, with what a corpus lacks filled in from emotion knowledge.
    # (The build below selects the same rows: its images come from this call's cache.)
    human = feid.build(corpora_root, params=SelectionParams.from_dict({"seed": seed}), progress=logger.debug).datasets
    truth = truth_from_dataset(datasets.concatenate_datasets([human["train"], human["test"]]), seed=seed)
    with _simulator(SimulatedVLLM, truth, seed, port) as server:
        say(f"simulated vision LLM listening at {server.base_url}")
        annotator = SVUAMCAnnotator(
            model=DEMO_MODEL, base_url=server.base_url, api_key=DEMO_API_KEY, cache_dir=out / "cache",
            prices=PRICE_TABLE[DEMO_MODEL], progress=progress,
        )  # fmt: skip
        result = build_datasets(corpora_root, out / "build", annotator=annotator, seed=seed, progress=say)
        # What a user of the published release sees: plain datasets, no plugin involved in reading.
        reloaded = {kind: datasets.load_dataset(str(out / "build" / "hub" / kind)) for kind in ("feid", "feab")}
        evaluation = evaluate(
            result.datasets["feab"], DEMO_MODEL, server.base_url, DEMO_API_KEY,
            name=f"{DEMO_MODEL} (simulated)", cache_dir=out / "cache", progress=progress,
        )  # fmt: skip
        report_paths = write_report([evaluation], out / "report")
        say(f"FEAB evaluated: {len(result.datasets['feab'])} rows, report in {out / 'report'}")
        stats = server.stats()
    demo = DemoResult(
        out=out,
        summary=result.summary,
        reloaded_rows={kind: sum(d.num_rows for d in dd.values()) for kind, dd in reloaded.items()},
        report_paths=report_paths,
        evaluation_markdown=markdown_report([evaluation]),
        server_stats=stats,
    )
    record = {"reloaded_rows": demo.reloaded_rows, "server": stats, "report": report_paths}
    (out / "demo.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return demo


@contextlib.contextmanager
def _simulator(factory: Any, truth: Any, seed: int, port: int) -> Iterator[Any]:
    """The simulator on `port`, or on a free port (with a warning: the cache then misses) if that one is taken."""
    server = factory(truth=truth, seed=seed, port=port)
    try:
        server.start()
    except OSError:
        logger.warning("port %d is taken: using a free port, so this run cannot reuse earlier answers", port)
        server = factory(truth=truth, seed=seed, port=0)
        server.start()
    try:
        yield server
    finally:
        server.stop()
