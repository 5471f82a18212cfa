"""AffectNet in either distribution layout (docs/corpora.md §3), with every marker and pitfall the spec lists.

classic: `Manually_Annotated_file_lists/{training,validation}.csv` (training with a header, validation without one
and with CRLF ends, as copies differ), whole web images under `Manually_Annotated/Manually_Annotated_Images/`, a face
box and 68 landmarks per row, codes 0..10, valence/arousal -2, zero-width and zero-height boxes, a row without its
image, the corrupt file hcai lists, a box only right under the row/column reading, and a box that misses its face.
npy: `{train_set,val_set}/{images,annotations}` with 0-d `.npy` values, some stored as strings.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from seke_hf.loading_scripts.affectnet import AFFECTNET_EXPRESSIONS, CLASSIC_COLUMNS
from seke_hf.synthetic.faces import draw_face, face_bytes, seed_of

CORRUPT_IMAGE = "103/29a31ebf1567693f4644c8ba3476ca9a72ee07fe67a5860d98707a0a.jpg"
"""The corrupt file of the real training set (hcai broken-files list, docs/corpora.md §3.1)."""
CLASSIC_HEADER = ",".join(CLASSIC_COLUMNS)


def _landmark_template() -> np.ndarray:
    """68 points (jaw 17, brows 10, nose 9, eyes 12, mouth 20) in unit-box coordinates, iBUG order."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([0.5 + 0.45 * np.cos(t), 0.45 + 0.5 * np.sin(t)], axis=1)
    brows = [(u, 0.3) for u in (*np.linspace(0.2, 0.45, 5), *np.linspace(0.55, 0.8, 5))]
    nose = [(0.5, v) for v in np.linspace(0.4, 0.58, 4)] + [(u, 0.62) for u in np.linspace(0.42, 0.58, 5)]
    a6, a12, a8 = (np.linspace(0, 2 * np.pi, n, endpoint=False) for n in (6, 12, 8))
    eyes = [(cx + 0.07 * np.cos(a), 0.4 + 0.03 * np.sin(a)) for cx in (0.33, 0.67) for a in a6]
    mouth = [(0.5 + 0.18 * np.cos(a), 0.78 + 0.07 * np.sin(a)) for a in a12]
    mouth += [(0.5 + 0.1 * np.cos(a), 0.78 + 0.03 * np.sin(a)) for a in a8]
    return np.concatenate([jaw, np.array(brows + nose + eyes + mouth)])


LANDMARK_TEMPLATE = _landmark_template()


def landmarks_in(box: tuple[int, int, int, int]) -> np.ndarray:
    """The template's 68 points placed in a face at (left, top, width, height)."""
    left, top, width, height = box
    return LANDMARK_TEMPLATE * (width, height) + (left, top)


def classic_csv_line(
    rel: str, box: tuple[int, int, int, int], landmarks: np.ndarray, code: int, valence: float, arousal: float
) -> str:
    """One row of `training.csv` / `validation.csv`: box as (face_x, face_y, face_width, face_height)."""
    points = ";".join(f"{v:.2f}" for v in landmarks.reshape(-1))
    return f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{points},{code},{valence:.6f},{arousal:.6f}"


def web_image(
    seed: int, size: tuple[int, int], face: tuple[int, int, int, int] | None, expression: str | None
) -> bytes:
    """A JPEG "web image" of `size` with a synthetic face at (left, top, width, height), or none."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(texture).resize(size, PIL.Image.BILINEAR)
    if face is not None:
        left, top, width, height = face
        image.paste(draw_face(seed, expression=expression, size=(width, height)), (left, top))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_affectnet(
    root: Path,
    release: str = "classic",
    seed: int = 0,
    n_per_code: int = 1,
    image_size: tuple[int, int] = (160, 200),
    face_size: tuple[int, int] = (64, 72),
) -> dict[str, dict[str, Any]]:
    """Write an AffectNet tree of `release` ("classic" or "npy") under `root`.

    Returns sample_id -> what was written: `split`, `code`, `expression` (canonical name or None), `valence`,
    `arousal` (None where the file says -2), `image_size` of the stored file, `face_size` (width, height) of the face,
    and `skip`: None for a row a loader must yield, else the reason it must skip it.
    """
    if release == "classic":
        return _write_classic(Path(root), seed, n_per_code, image_size, face_size)
    if release == "npy":
        return _write_npy(Path(root), seed, n_per_code, face_size)
    raise ValueError(f"release must be 'classic' or 'npy', not {release!r}")


def _write_classic(
    root: Path, seed: int, n_per_code: int, image_size: tuple[int, int], face_size: tuple[int, int]
) -> dict[str, dict[str, Any]]:
    images = root / "Manually_Annotated" / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = image_size
    fw, fh = face_size
    truth: dict[str, dict[str, Any]] = {}

    def row(split: str, code: int, va: tuple[float, float], *, pitfall: str | None = None) -> str:
        index = len(truth)
        rel = CORRUPT_IMAGE if pitfall == "corrupt" else f"{rng.integers(1, 1000)}/{_hash_name(seed, index)}.jpg"
        left, top = int(rng.integers(0, width - fw)), int(rng.integers(0, height - fh))
        face = (left, top, fw, fh)
        stated = face  # what the CSV says
        skip = {"zero_width": "degenerate face box", "zero_height": "degenerate face box",
                "missing": "missing image", "corrupt": "unreadable image",
                "box_misses_face": "face box disagrees with the landmarks"}.get(pitfall or "")  # fmt: skip
        if pitfall == "zero_width":
            stated = (left, top, 0, fh)
        elif pitfall == "zero_height":
            stated = (left, top, fw, 0)
        elif pitfall == "row_column_box":  # the face is at (left=y, top=x): ESR's img[x:x+w, y:y+h] reading
            face = (4, height - fh - 4, fw, fh)
            stated = (face[1], face[0], fh, fw)
        elif pitfall == "box_misses_face":
            face = (2, 2, fw, fh)
            stated = (width - fw - 2, height - fh - 2, fw, fh)
        expression = AFFECTNET_EXPRESSIONS.get(code)
        path = images / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if pitfall == "corrupt":
            path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
        elif pitfall != "missing":
            pixels = seed_of("affectnet", seed, rel)
            path.write_bytes(web_image(pixels, image_size, None if code == 10 else face, expression or "neutral"))
        valid_va = all(-1 <= v <= 1 for v in va)
        truth[f"affectnet/{rel.removesuffix('.jpg')}"] = {
            "split": split, "code": code, "expression": expression,
            "valence": va[0] if valid_va else None, "arousal": va[1] if valid_va else None,
            "image_size": image_size, "face_size": face[2:], "skip": skip, "pitfall": pitfall,
        }  # fmt: skip
        return classic_csv_line(rel, stated, landmarks_in(face), code, *va)

    def some_va() -> tuple[float, float]:
        return tuple(round(float(v), 4) for v in rng.uniform(-1, 1, size=2))  # type: ignore[return-value]

    training = [CLASSIC_HEADER]
    training += [row("train", code, some_va()) for code in range(8) for _ in range(n_per_code)]
    training += [
        row("train", 8, some_va()),  # None: not an expression, valence/arousal still rated
        row("train", 9, (-2, -2)),  # Uncertain
        row("train", 10, (-2, -2)),  # No-Face
        row("train", 3, (-2, 0.4)),  # -2 on one axis: the pair is missing
        row("train", 1, some_va(), pitfall="zero_width"),
        row("train", 2, some_va(), pitfall="zero_height"),
        row("train", 4, some_va(), pitfall="missing"),
        row("train", 5, some_va(), pitfall="corrupt"),
        row("train", 6, some_va(), pitfall="row_column_box"),
        row("train", 7, some_va(), pitfall="box_misses_face"),
    ]
    validation = [row("validation", code, some_va()) for code in range(8) for _ in range(n_per_code)]
    validation += [row("validation", 8, some_va()), row("validation", 9, (-2, -2)), row("validation", 10, (-2, -2))]
    (lists / "training.csv").write_text("\n".join(training) + "\n")
    (lists / "validation.csv").write_bytes(("\r\n".join(validation) + "\r\n").encode())  # no header, CRLF
    return truth


def _write_npy(root: Path, seed: int, n_per_code: int, face_size: tuple[int, int]) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, Any]] = {}
    for split, folder, count in (("train", "train_set", 8 * n_per_code + 5), ("validation", "val_set", 8 * n_per_code)):
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            code = i % 8
            va = tuple(round(float(v), 4) for v in rng.uniform(-1, 1, size=2))
            pitfall = {8: "va_missing", 9: "missing", 10: "corrupt"}.get(i) if split == "train" else None
            if pitfall == "va_missing":
                va = (-2.0, -2.0)
            as_text = i % 2 == 1  # 0-d string arrays, as some copies store them
            annotations = root / folder / "annotations"
            np.save(annotations / f"{i}_exp.npy", np.array(str(code)) if as_text else np.array(code, dtype=np.int64))
            for kind, value in (("val", va[0]), ("aro", va[1])):
                np.save(annotations / f"{i}_{kind}.npy", np.array(str(value)) if as_text else np.array(value))
            np.save(annotations / f"{i}_lnd.npy", landmarks_in((0, 0, *face_size)).reshape(-1).astype(np.float32))
            image = root / folder / "images" / f"{i}.jpg"
            expression = AFFECTNET_EXPRESSIONS[code]
            if pitfall == "corrupt":
                image.write_bytes(b"not an image")
            elif pitfall != "missing":
                image.write_bytes(
                    face_bytes(seed_of("affectnet", seed, folder, i), expression=expression, size=face_size)
                )
            missing_va = pitfall == "va_missing"
            truth[f"affectnet/{folder}/{i}"] = {
                "split": split, "code": code, "expression": expression,
                "valence": None if missing_va else va[0], "arousal": None if missing_va else va[1],
                "image_size": face_size, "face_size": face_size, "pitfall": pitfall,
                "skip": {"missing": "missing image", "corrupt": "unreadable image"}.get(pitfall or ""),
            }  # fmt: skip
    return truth


def _hash_name(seed: int, index: int) -> str:
    """A 56-hex-digit name like the real files' (`29a31ebf...a0a.jpg`)."""
    return hashlib.sha224(f"affectnet/{seed}/{index}".encode()).hexdigest()
