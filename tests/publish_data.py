"""Small FEID/FEAB-shaped datasets for the publishing tests: unified-schema rows with synthetic faces, the
annotator's columns (provenance, uncertainty, descriptions, status, ...) and chat columns (messages, images)."""

from __future__ import annotations

from typing import Any

import datasets

from seke_hf.release import image_columns
from seke_hf.schema import FEATURES, LEVELS, aus_from_active, empty_row
from seke_hf.synthetic.faces import face_bytes, seed_of

LEVEL_STRUCT = {level: datasets.Value("string") for level in LEVELS}
ANNOTATED_FEATURES = datasets.Features(
    {
        **FEATURES,
        "provenance": LEVEL_STRUCT,
        "uncertainty": {level: datasets.Value("float32") for level in LEVELS},
        "descriptions": LEVEL_STRUCT,
        "mc_samples": datasets.Value("int32"),
        "requests": datasets.Value("int32"),
        "status": datasets.Value("string"),
        "status_reason": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "images": datasets.List(datasets.Image()),
    }
)

# What each corpus labels by hand (docs/paper.md): the rest is "generated" by the annotator.
HUMAN_LEVELS = {"rafdb": ("expression",), "affectnet": ("expression", "valence_arousal"), "disfa": ("aus",)}


def annotated_row(source: str, split: str, i: int) -> dict[str, Any]:
    image = {"bytes": face_bytes(seed_of(source, split, i), size=(24, 24)), "path": None}
    row = empty_row(f"{source}/{split}_{i:04d}", source, subject=f"S{i % 3:03d}", image=image)
    row["expression"] = (i * 3 + len(source)) % 7
    row["valence"], row["arousal"] = round(0.1 * (i % 5) - 0.2, 2), round(0.3 - 0.1 * (i % 4), 2)
    row["aus"] = aus_from_active(["AU12", "AU6"] if i % 2 else ["AU4"])
    human = HUMAN_LEVELS[source]
    rejected = i % 5 == 4
    row.update(
        provenance={level: "human" if level in human else "generated" for level in LEVELS},
        uncertainty={level: None if level in human else round(0.05 * (i % 4), 2) for level in LEVELS},
        descriptions={level: f"{level} of {row['sample_id']}" for level in LEVELS},
        mc_samples=4 + i % 3,
        requests=2 + i % 2,
        status="rejected" if rejected else "accepted",
        status_reason="AU12 contradicts the human expression" if rejected else "",
        messages=[
            {"role": "user", "content": "<image>What is the facial expression?"},
            {"role": "assistant", "content": f"expression {row['expression']}"},
        ],
        images=[image],
    )
    return row


def corpus(source: str, sizes: dict[str, int], features: datasets.Features = ANNOTATED_FEATURES):
    rows = {split: [annotated_row(source, split, i) for i in range(n)] for split, n in sizes.items()}
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list([{k: r[k] for k in features} for r in rs], features=features)
         for split, rs in rows.items()}
    )  # fmt: skip


def release_configs(features: datasets.Features = ANNOTATED_FEATURES) -> dict[str, datasets.DatasetDict]:
    """Three corpora with train and test splits, and `all` as their concatenation (in corpus order)."""
    parts = {
        "rafdb": corpus("rafdb", {"train": 5, "test": 3}, features),
        "affectnet": corpus("affectnet", {"train": 4, "test": 2}, features),
        "disfa": corpus("disfa", {"train": 3, "test": 2}, features),
    }
    whole = datasets.DatasetDict(
        {split: datasets.concatenate_datasets([p[split] for p in parts.values()]) for split in ("train", "test")}
    )
    return {"all": whole, **parts}


def _undecoded(feature: Any) -> Any:
    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, datasets.List):
        return datasets.List(_undecoded(feature.feature))
    return feature


def comparable(ds: datasets.Dataset | datasets.IterableDataset) -> list[dict[str, Any]]:
    """Rows as plain Python with images as their stored bytes, so two datasets compare exactly."""
    features = datasets.Features({name: _undecoded(f) for name, f in ds.features.items()})
    if image_columns(ds.features):
        ds = ds.cast(features)
    return list(ds) if isinstance(ds, datasets.IterableDataset) else ds.to_list()
