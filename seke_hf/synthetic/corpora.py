"""All six synthetic corpora side by side under their usual folder names: the ROOT that FEID/FEAB are built from.

Each corpus writer knows its own layout; this only puts each one in the folder a user's copy would have
(`CK+`, `RAF-DB`, `AffectNet`, `DISFA`, `BP4D`, `Aff-Wild2`) and picks sizes: `small=True` for tests (a few
seconds to write and load), `small=False` for the demo and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from seke_hf.corpora import CORPORA


def _ckplus(root: Path, seed: int, small: bool) -> Any:
    from seke_hf.feid import ckplus_split
    from seke_hf.synthetic.ckplus import write_ckplus

    if not small:
        return write_ckplus(root, seed=seed)
    split = ckplus_split()
    train = [s for s, part in sorted(split.items()) if part == "train"][:8]
    test = [s for s, part in sorted(split.items()) if part == "test"][:4]
    return write_ckplus(root, seed=seed, sequences=train + test, unlabelled=1)


def _rafdb(root: Path, seed: int, small: bool) -> Any:
    from seke_hf.synthetic.rafdb import write_rafdb

    n_train, n_test = (14, 7) if small else (140, 49)
    return write_rafdb(root / "RAF-DB", n_train=n_train, n_test=n_test, seed=seed)


def _affectnet(root: Path, seed: int, small: bool) -> Any:
    from seke_hf.synthetic.affectnet import write_affectnet

    return write_affectnet(root / "AffectNet", seed=seed, n_per_code=1 if small else 6)


def _disfa(root: Path, seed: int, small: bool) -> Any:
    from seke_hf.synthetic.disfa import write_disfa

    return write_disfa(root, seed=seed, n_frames=16 if small else 60)


def _bp4d(root: Path, seed: int, small: bool) -> Any:
    from seke_hf.synthetic.bp4d import write_bp4d

    return write_bp4d(root, seed=seed, n_frames=6 if small else 24)


def _affwild2(root: Path, seed: int, small: bool) -> Any:
    from seke_hf.synthetic.affwild2 import write_affwild2

    return write_affwild2(root / "Aff-Wild2", seed=seed)


WRITERS: dict[str, Callable[[Path, int, bool], Any]] = {
    "ckplus": _ckplus,
    "rafdb": _rafdb,
    "affectnet": _affectnet,
    "disfa": _disfa,
    "bp4d": _bp4d,
    "affwild2": _affwild2,
}
"""Source -> writer of that corpus into its usual folder under the root (DISFA, BP4D and CK+ name it themselves)."""


def write_corpora(
    root: str | Path, corpora: Iterable[str] = CORPORA, seed: int = 0, small: bool = True
) -> dict[str, Any]:
    """Write the synthetic `corpora` under `root`; source -> what its writer returned (its ground truth)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    unknown = set(corpora) - set(WRITERS)
    if unknown:
        raise ValueError(f"unknown corpora {sorted(unknown)}; expected some of {', '.join(CORPORA)}")
    return {source: WRITERS[source](root, seed, small) for source in corpora}
