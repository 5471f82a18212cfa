"""The README's examples, run as a newcomer would run them: every ```python and ```bash block, top to bottom.

What stands in for what a newcomer has (and nothing else is changed):

- **corpora**: the synthetic raw trees of `seke-hf demo --small`, run once (its output is also checked against the
  README's "What it prints", shape not numbers); `/data/faces` and `~/data/<corpus>` (or `/data/<corpus>`) in a
  block become that folder and its corpus folders;
- **the vision LLM**: the simulator (`seke_hf.simulate.SimulatedVLLM`) knowing those faces, reached over real HTTP
  through `OPENAI_BASE_URL` (so `--model gpt-4o` talks to it) and in place of `http://127.0.0.1:8000`;
- **the Hub**: `tests/hub_server.py` behind `HF_ENDPOINT`, with a user (`HF_TOKEN`) owning `org/` and `my-org/`;
  the datasets a block reads from the Hub (`org/feab`, `org/feid-labels`, `org/some-faces`) are published to it first;
- **files a block names as the reader's own**: `feid_annotations.parquet`, predictions JSONL made elsewhere, folders
  of unlabelled faces: made from the demo's build.

The blocks run in one working folder, in README order, so a block sees what earlier ones wrote (the publishing
example runs after the `seke-hf build` above it). Python blocks of one `##` section share their variables, as in
one session. `seke-hf ...` lines run the real command-line entry point (`seke_hf.cli.main`) in this process (a new
interpreter per line would cost more than the whole run); a `seke-hf simulate` server runs in the background until
the next server line or the end of its block; other lines (`curl`, ...) run in a shell.

A block that cannot run here is marked in the README, visibly, right before it:
`<!-- readme-test: skip (why) -->`. Every other block must run without error.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
from hub_server import shared_server

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<text>.*?)\s*-->$")
SKIP = re.compile(r"^skip \((?P<reason>[^)]+)\)$")
RUNNABLE = ("python", "bash")
CORPUS_FOLDERS = ("CK+", "RAF-DB", "AffectNet", "DISFA", "BP4D", "Aff-Wild2")
MODEL_PORT = "8000"
"""The port the README's examples use for a local OpenAI-compatible server."""
TOKEN = "hf_readme_reader_0123456789abcdef"


@dataclass
class Block:
    language: str
    source: str
    line: int  # README line of the opening fence
    section: str  # the `## ` heading it is under
    skip: str | None = None  # why it cannot run here

    def where(self) -> str:
        return f"README.md:{self.line} ({self.section})"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a README, with their section and `readme-test` marker (if any)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    section, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = re.match(r"^```(\w*)\s*$", line)
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        blocks.append(Block(fence.group(1), "\n".join(body) + "\n", start + 1, section, _skip_reason(lines, start)))
        i += 1
    return blocks


def _skip_reason(lines: list[str], fence: int) -> str | None:
    """The reason of the `<!-- readme-test: skip (why) -->` marker right above a fence (blank lines between)."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    marker = MARKER.match(lines[j].strip()) if j >= 0 else None
    if marker is None:
        return None
    skip = SKIP.match(marker.group("text"))
    if skip is None:
        raise ValueError(f"README.md:{j + 1}: a readme-test marker reads `skip (why)`, not {marker.group('text')!r}")
    return skip.group("reason")


# -- the stand-ins -------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """What the examples run against, made once per session."""

    work: Path  # the working folder the blocks run in
    corpora: Path  # the synthetic corpora, in their raw layouts
    model_url: str  # the simulator's base URL (ends in /v1)
    truth: Path  # its truth table, for the `seke-hf simulate --truth` examples
    demo_output: str = ""  # what `seke-hf demo --small` printed: its stage lines (stderr), then its summary

    def substitute(self, source: str, model_port: str) -> str:
        """The block as it runs here: the reader's corpora folders and local server port replaced by ours."""
        folders = "|".join(re.escape(name) for name in CORPUS_FOLDERS)
        source = re.sub(rf"~?/data/({folders})(?![\w-])", lambda m: str(self.corpora / m.group(1)), source)
        source = source.replace("/data/faces", str(self.corpora))
        source = source.replace(f"--port {MODEL_PORT}", f"--port {model_port}")
        return source.replace(f"127.0.0.1:{MODEL_PORT}", f"127.0.0.1:{model_port}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> Iterator[Stage]:
    from seke_hf import feid
    from seke_hf.simulate import SimulatedVLLM, truth_from_dataset

    root = tmp_path_factory.mktemp("readme")
    work, demo = root / "work", root / "demo"
    work.mkdir()
    command = [sys.executable, "-m", "seke_hf", "demo", "--out", str(demo), "--small", "--no-progress", "--port", "0"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert shown.returncode == 0, shown.stderr[-3000:]
    corpora = demo / "corpora"
    human = feid.build(corpora, progress=lambda line: None).datasets
    truth = truth_from_dataset(datasets.concatenate_datasets([human["train"], human["test"]]))
    truth.save(root / "truth.jsonl")
    hub = shared_server()
    hub.add_user("readme-reader", TOKEN, orgs=("org", "my-org"))
    with SimulatedVLLM(truth=truth) as server, _environment(server.base_url, hub.endpoint):
        stage = Stage(work, corpora, server.base_url, root / "truth.jsonl", shown.stderr + shown.stdout)
        _readers_own_files(stage, demo / "build", root)
        yield stage


@contextlib.contextmanager
def _environment(model_url: str, hub_endpoint: str) -> Iterator[None]:
    """The simulator as the OpenAI endpoint and the test Hub user's token, for the session; restored after."""
    saved = {name: os.environ.get(name) for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HF_TOKEN")}
    os.environ.update(OPENAI_BASE_URL=model_url, OPENAI_API_KEY="sk-readme-test", HF_TOKEN=TOKEN)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _readers_own_files(stage: Stage, prepared: Path, scratch: Path) -> None:
    """What the README assumes the reader already has, from the demo's build: its annotations, predictions made
    elsewhere, folders of unlabelled faces, and datasets on the Hub."""
    from seke_hf.cli.publish import annotations_copy
    from seke_hf.publish import push
    from seke_hf.release import export_annotations

    feid = datasets.load_from_disk(str(prepared / "arrow" / "feid"))["train"]
    feab = datasets.load_from_disk(str(prepared / "arrow" / "feab"))["test"]
    export_annotations(feid).to_parquet(stage.work / "feid_annotations.parquet")
    for name, answer in (("my_finetune_predictions", None), ("preds", None), ("base", "neutral")):
        with open(stage.work / f"{name}.jsonl", "w") as f:
            for row in feab.select_columns(["sample_id", "expression"]):
                expression = answer or feab.features["expression"].int2str(max(row["expression"], 0))
                f.write(json.dumps({"sample_id": row["sample_id"], "expression": expression}) + "\n")
    faces = sorted((stage.corpora / "RAF-DB").rglob("*.jpg"))[:6]
    for folder in ("my_faces", "faces"):
        (stage.work / folder).mkdir()
        for i, face in enumerate(faces):  # names without "train"/"test", which imagefolder reads as splits
            shutil.copy(face, stage.work / folder / f"face_{i}.jpg")
    push(prepared / "hub" / "feab", "org/feab")
    push(annotations_copy(prepared / "hub" / "feid", scratch / "feid-labels"), "org/feid-labels")
    datasets.load_dataset("imagefolder", data_dir=str(stage.work / "faces")).push_to_hub("org/some-faces", private=True)


# -- running a block -----------------------------------------------------------------------------------------------


def run_python(block: Block, source: str, namespace: dict) -> None:
    exec(compile(source, block.where(), "exec"), namespace)


def commands(source: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", source)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(line)
    return out


def run_bash(block: Block, source: str, setenv) -> None:
    servers: list[subprocess.Popen] = []
    try:
        for line in commands(source):
            words = [os.path.expanduser(w) for w in shlex.split(line, comments=True)]
            if words[0] == "seke-hf" and words[1:2] == ["simulate"]:
                _stop(servers)  # one terminal: Ctrl-C the last server before starting the next
                servers.append(_serve(words[1:], block))
            elif words[0] == "seke-hf":
                _seke_hf(words[1:], block, line)
            elif words[0] == "export":
                name, _, value = words[1].partition("=")
                setenv(name, value)
            else:
                done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120, check=False)
                assert done.returncode == 0, f"{block.where()}: `{line}` failed:\n{done.stdout}\n{done.stderr}"
    finally:
        _stop(servers)


def _seke_hf(argv: list[str], block: Block, line: str) -> None:
    from seke_hf.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == 0, f"{block.where()}: `{line}` exited {status}:\n{err.getvalue()[-3000:]}"


def _serve(argv: list[str], block: Block) -> subprocess.Popen:
    """A `seke-hf simulate` server in the background, once it says it is serving."""
    server = subprocess.Popen([sys.executable, "-m", "seke_hf", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    said = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        said.append(line)
        if "serving" in line:
            return server
        if not line and server.poll() is not None:
            break
    server.kill()
    raise AssertionError(f"{block.where()}: `seke-hf {' '.join(argv)}` did not start:\n{''.join(said)}")


def _stop(servers: list[subprocess.Popen]) -> None:
    while servers:
        server = servers.pop()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


# -- the tests -----------------------------------------------------------------------------------------------------


def test_every_block_is_run_or_says_why_not():
    blocks = readme_blocks(README.read_text())
    runnable = [b for b in blocks if b.language in RUNNABLE]
    assert len(runnable) >= 15, "the README lost its examples, or this test lost track of them"
    assert all(b.language in (*RUNNABLE, "", "json", "text") for b in blocks), [b.where() for b in blocks]
    skipped = [b for b in runnable if b.skip]
    why = [(b.where(), b.skip) for b in skipped]
    assert len(skipped) * 3 <= len(runnable), f"most examples must run here; skipped: {why}"
    with pytest.raises(ValueError, match="skip \\(why\\)"):
        readme_blocks("<!-- readme-test: ignore -->\n```bash\nls\n```\n")
    assert readme_blocks("<!-- readme-test: skip (needs a GPU) -->\n\n```bash\nvllm\n```\n")[0].skip == "needs a GPU"


def readme_demo_output(text: str) -> list[str]:
    """The lines of the README's "What it prints" block of `seke-hf demo`."""
    start = text.index("What it prints")
    body = text[text.index("```\n", start) + 4 :]
    return body[: body.index("```")].splitlines()


def shape(line: str) -> re.Pattern:
    """A README output line as a pattern: any number where it has a number, any text where it has "...", any folder
    where it has the demo's default folder."""
    number, pieces = r"\d[\d,]*(?:\.\d+)?", []
    for part in re.split(r"(\.\.\.|seke-hf-demo\S*|\d[\d,]*(?:\.\d+)?)", line.rstrip()):
        if part == "...":
            pieces.append(".*")
        elif part.startswith("seke-hf-demo"):
            pieces.append(r"\S+")
        elif re.fullmatch(number, part):
            pieces.append(number)
        else:
            pieces.append(re.escape(part))
    return re.compile("".join(pieces) + "$")


def test_the_demo_prints_what_the_readme_shows(stage):
    printed = [line.rstrip() for line in stage.demo_output.splitlines()]
    at = 0
    for line in readme_demo_output(README.read_text()):
        if line.strip() in ("", "..."):
            continue
        pattern = shape(line)
        found = next((i for i in range(at, len(printed)) if pattern.match(printed[i])), None)
        assert found is not None, f"the demo no longer prints a line like\n  {line}\nafter\n  {printed[at - 1]}"
        at = found + 1


NOISE = ("Task was destroyed", "Event loop is closed", "was never awaited", "Traceback")
"""What must never reach a reader from our own event loop (issue 19: a cached re-run printed dozens of these)."""


def test_readme_examples_run(stage, monkeypatch, caplog, recwarn):
    monkeypatch.chdir(stage.work)
    namespaces: dict[str, dict] = {}
    failures = []
    for block in readme_blocks(README.read_text()):
        if block.language not in RUNNABLE or block.skip:
            continue
        starts_server = "seke-hf simulate" in block.source
        port = str(_free_port()) if starts_server else stage.model_url.rsplit(":", 1)[1].split("/")[0]
        source = stage.substitute(block.source, port)
        started, cpu = time.monotonic(), time.process_time()
        try:
            if block.language == "python":
                run_python(block, source, namespaces.setdefault(block.section, {"__name__": "__readme__"}))
            else:
                run_bash(block, source, monkeypatch.setenv)
        except Exception as e:  # report every broken block, not only the first
            failures.append(f"{block.where()}: {type(e).__name__}: {e}"[:3000])
        print(f"{block.where()}: {time.monotonic() - started:.1f} s, cpu {time.process_time() - cpu:.1f} s")
    assert not failures, "README examples that do not run:\n\n" + "\n\n".join(failures)
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in recwarn]
    noise = [line for line in said if any(n in line for n in NOISE)]
    assert not noise, "the examples printed event-loop noise:\n" + "\n".join(noise[:5])
