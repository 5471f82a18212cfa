"""The resumable state of a batch run, one small JSON file beside the request cache.

It holds what a later process needs to go on without paying twice: the batches in flight (or files exported for an
offline runner) with the request keys each carries, the round reached, how often each request came back without an
answer, and the spend so far. The answers themselves go to the request cache the moment they are read, so which rows
are still pending is always recomputed from the cache (it cannot go stale). No API key is ever written here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


@dataclass
class Submission:
    """One part of one round: a batch at the provider (`batch_id`) or a file for an offline runner (`path`)."""

    round: int
    part: int
    keys: list[str]
    projected_cost: float = 0.0
    batch_id: str | None = None
    path: str | None = None


@dataclass
class BatchState:
    """What a batch run has in flight, where it stands and what it spent (see the module docstring)."""

    job: str
    round: int = 0
    submissions: list[Submission] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    spent: float = 0.0
    answered: dict[str, int] = field(default_factory=dict)
    """Requests, choices and tokens of the answers read back so far (by every process of the run)."""
    cost_model: dict[str, float] = field(default_factory=dict)
    """The calibration of cost projections (`budget.CostModel`), so a later process projects as well."""
    rows_total: int = 0
    pending_history: list[int] = field(default_factory=list)
    """Rows still pending after each pass: how many rows a round carries into the next one."""

    def in_flight(self) -> set[str]:
        """Keys of requests submitted (or exported) and not yet read back."""
        return {key for submission in self.submissions for key in submission.keys}

    def reserved(self) -> float:
        """Projected cost of what is in flight (counted against the budget until the answers come)."""
        return sum(submission.projected_cost for submission in self.submissions)

    # -- storage ---------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, job: str) -> BatchState:
        """The state at `path`, or a fresh one; a file that cannot be read is an error naming it."""
        if not path.exists():
            return cls(job)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            data.pop("version", None)
            submissions = [Submission(**s) for s in data.pop("submissions", [])]
            return cls(**data, submissions=submissions)
        except (OSError, ValueError, TypeError) as e:
            raise RuntimeError(
                f"batch state {path} is unreadable ({e}); if no batch of this run is still in flight, delete it "
                "(answers already read are in the request cache and will not be paid again)"
            ) from None

    def save(self, path: Path) -> None:
        """Atomically (a killed process leaves the old state or the new one, never half of one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": STATE_VERSION, **asdict(self)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
