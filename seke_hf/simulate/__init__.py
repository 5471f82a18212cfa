"""A simulated vision LLM behind a real OpenAI-compatible HTTP server, for dry runs and tests.

It knows the hidden labels of the faces it is shown (a `TruthTable`), answers facial-emotion questions through a
documented noise model (`NoiseModel`, see `noise.py`), injects provider faults on demand (`FaultPlan`) and counts
tokens like the real API (`GET /stats`), so a whole annotation run can be rehearsed and costed before paying for it.
"""

from __future__ import annotations

from seke_hf.simulate.faults import FAULT_KINDS, FaultPlan
from seke_hf.simulate.noise import PROFILES, Labels, NoiseModel, Priors
from seke_hf.simulate.server import DEFAULT_MODEL, SimulatedVLLM
from seke_hf.simulate.truth import TruthEntry, TruthTable, labels_from_row, truth_from_dataset

__all__ = [
    "DEFAULT_MODEL",
    "FAULT_KINDS",
    "PROFILES",
    "FaultPlan",
    "Labels",
    "NoiseModel",
    "Priors",
    "SimulatedVLLM",
    "TruthEntry",
    "TruthTable",
    "labels_from_row",
    "truth_from_dataset",
]
