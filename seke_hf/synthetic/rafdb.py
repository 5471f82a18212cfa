"""RAF-DB basic in its distribution layout (docs/corpora.md §2): label file with the on-disk typo, aligned/original."""

from __future__ import annotations

from pathlib import Path

from seke_hf.loading_scripts.rafdb import RAFDB_EXPRESSIONS
from seke_hf.synthetic.faces import face_bytes, seed_of

_CODE_OF = {name: code for code, name in RAFDB_EXPRESSIONS.items()}


def write_rafdb(root: Path, n_train: int = 14, n_test: int = 7, seed: int = 0, original: bool = True) -> dict[str, str]:
    """Write `root/basic/...`; returns sample_id -> expression name as written."""
    base = root / "basic"
    (base / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (base / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    if original:
        (base / "Image" / "original").mkdir(parents=True, exist_ok=True)
    names = sorted(_CODE_OF)
    truth, lines = {}, []
    for split, count, width in (("train", n_train, 5), ("test", n_test, 4)):
        for i in range(1, count + 1):
            stem = f"{split}_{i:0{width}d}"
            expression = names[(i + seed) % len(names)]
            pixel_seed = seed_of("rafdb", seed, stem)
            (base / "Image" / "aligned" / f"{stem}_aligned.jpg").write_bytes(
                face_bytes(pixel_seed, expression=expression, size=(100, 100))
            )
            if original:
                (base / "Image" / "original" / f"{stem}.jpg").write_bytes(
                    face_bytes(pixel_seed, expression=expression, size=(160, 200))
                )
            lines.append(f"{stem}.jpg {_CODE_OF[expression]}")
            truth[f"rafdb/{stem}"] = expression
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return truth
