"""Annotations-only releases: export without images, attach them back from the corpora, merge annotations by id."""

from __future__ import annotations

import logging
import shutil

import datasets
import pytest

from seke_hf.annotate import SVUAMCAnnotator
from seke_hf.instructions import to_chat
from seke_hf.release import (
    ImagesNotFound,
    attach_images,
    export_annotations,
    image_columns,
    load_annotations,
    merge_annotations,
)
from seke_hf.simulate import SimulatedVLLM, truth_from_dataset
from seke_hf.synthetic.corpora import write_corpora

SMALL = {"min_frame_gap": {"disfa": 3, "bp4d": 2, "affwild2": 2}}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("release") / "ROOT"
    write_corpora(root, seed=1, small=True)
    return root


@pytest.fixture(scope="module")
def feid(root):
    return datasets.load_dataset("feid", data_dir=str(root), split="train", selection=SMALL)


@pytest.fixture(scope="module")
def annotated(feid, tmp_path_factory):
    """A real SV-UAMC run (simulated vision LLM over HTTP) on a few FEID rows of every source."""
    rows = feid.select([i for i, s in enumerate(feid["source"]) if s in ("rafdb", "disfa", "ckplus")][:12])
    with SimulatedVLLM(truth=truth_from_dataset(rows)) as server:
        annotator = SVUAMCAnnotator(
            base_url=server.base_url,
            cache_dir=str(tmp_path_factory.mktemp("cache")),
            max_samples=6,
            progress=False,
        )
        # Undecoded images: a map that decodes them would write them back re-encoded (JPEG at another quality).
        rows = rows.cast_column("image", datasets.Image(decode=False))
        out = rows.map(annotator, batched=True, batch_size=12, features=annotator.output_features(rows.features))
        annotator.close()
    return out.cast_column("image", datasets.Image())


def raw(ds):
    """Rows with image bytes instead of decoded pixels, for exact comparison."""
    for column in image_columns(ds.features):
        feature = ds.features[column]
        ds = ds.cast_column(
            column,
            datasets.Image(decode=False)
            if isinstance(feature, datasets.Image)
            else datasets.List(datasets.Image(decode=False)),
        )
    return ds.to_list()


def test_export_drops_every_image_column_and_nothing_else(feid):
    chat = to_chat(feid, keep_image=True)
    assert image_columns(chat.features) == ["image", "images"]
    exported = export_annotations(chat)
    assert exported.column_names == [c for c in chat.column_names if c not in ("image", "images")]
    assert exported["sample_id"] == chat["sample_id"] and exported["messages"] == chat["messages"]
    with pytest.raises(ValueError, match="sample_id"):
        export_annotations(feid.remove_columns("sample_id"))


def test_annotations_only_round_trip_restores_identical_rows(annotated, root, tmp_path):
    release = tmp_path / "feid_annotations.parquet"
    export_annotations(annotated).to_parquet(str(release))  # what may be published
    published = datasets.load_dataset("parquet", data_files=str(release), split="train")
    assert not image_columns(published.features)
    restored, report = attach_images(published, root, return_report=True)
    assert report.restored == len(annotated) and report.not_found == 0
    assert restored.features == annotated.features
    assert raw(restored) == raw(annotated)


def test_chat_rows_round_trip_too(feid, root):
    chat = to_chat(feid.select(range(8)))
    restored = attach_images(export_annotations(chat), root)
    assert restored.column_names == chat.column_names
    assert raw(restored) == raw(chat)


def test_attach_reports_ids_it_cannot_find(feid, root, tmp_path, caplog):
    partial = tmp_path / "partial"
    shutil.copytree(root / "RAF-DB", partial / "RAF-DB")
    rows = export_annotations(feid.select([i for i, s in enumerate(feid["source"]) if s in ("rafdb", "ckplus")]))
    first = rows["source"].index("rafdb")
    rows = rows.map(lambda r, i: {"sample_id": "rafdb/train_99999"} if i == first else {}, with_indices=True)
    n_ckplus = rows["source"].count("ckplus")
    with caplog.at_level(logging.WARNING, logger="seke_hf.release"):
        kept, report = attach_images(rows, partial, return_report=True)
    assert report.missing == {"rafdb": ["rafdb/train_99999"]} and report.missing_corpora == {"ckplus": n_ckplus}
    assert len(kept) == len(rows) - 1 - n_ckplus and set(kept["source"]) == {"rafdb"}
    assert "rafdb/train_99999" in caplog.text and "corpus folder not found" in caplog.text
    nulls = attach_images(rows, partial, on_missing="keep")
    assert len(nulls) == len(rows) and nulls.cast_column("image", datasets.Image(decode=False))[first]["image"] is None
    with pytest.raises(ImagesNotFound, match=r"rafdb: 1 ids not in .*RAF-DB"):
        attach_images(rows, partial, on_missing="raise")


def test_load_dataset_merges_annotations_by_id(annotated, root, tmp_path):
    path = tmp_path / "annotations.parquet"
    export_annotations(annotated).shuffle(seed=0).to_parquet(str(path))  # any row order
    merged = datasets.load_dataset("feid", data_dir=str(root), split="train", selection=SMALL, annotations=str(path))
    assert merged.features == annotated.features
    by_id = {row["sample_id"]: row for row in raw(merged)}
    assert [by_id[row["sample_id"]] for row in raw(annotated)] == raw(annotated)
    untouched = [row for sample_id, row in by_id.items() if sample_id not in set(annotated["sample_id"])]
    assert untouched and all(row["status"] is None and row["provenance"] is None for row in untouched)


def test_merge_annotations_keeps_unmatched_labels_and_checks_its_input(annotated, feid, tmp_path):
    labels = export_annotations(annotated)
    merged = merge_annotations(feid, labels)
    assert merged.column_names == feid.column_names + [c for c in labels.column_names if c not in feid.column_names]
    assert merged["sample_id"] == feid["sample_id"]
    index = {sample_id: i for i, sample_id in enumerate(feid["sample_id"])}
    for row in labels:
        assert merged[index[row["sample_id"]]]["valence"] == row["valence"]
    other = [i for i, sample_id in enumerate(feid["sample_id"]) if sample_id not in set(labels["sample_id"])]
    assert merged.select(other)["aus"] == feid.select(other)["aus"]
    assert len(merge_annotations(feid, labels, on_unmatched="drop")) == len(labels)
    with pytest.raises(KeyError, match="have no annotation"):
        merge_annotations(feid, labels, on_unmatched="raise")
    with pytest.raises(ValueError, match="repeat 1 sample ids"):
        merge_annotations(feid, datasets.concatenate_datasets([labels, labels.select([0])]))
    with pytest.raises(FileNotFoundError, match=r"(?s)annotations .*missing\.parquet not found.*sample_id"):
        load_annotations(str(tmp_path / "missing.parquet"))
    named = labels.select_columns(["sample_id", "expression"]).cast_column("expression", datasets.Value("string"))
    named = named.map(lambda r: {"expression": "fear"})
    assert set(merge_annotations(feid, named, on_unmatched="drop")["expression"]) == {3}  # names -> ClassLabel ids


def test_annotations_never_replace_the_faces(feid, root, tmp_path):
    """A hostile annotations file with an `image` column of paths: the faces stay those read from the corpora."""
    secret = tmp_path / "private.key"
    secret.write_bytes(b"never in a dataset")
    rows = export_annotations(feid).select_columns(["sample_id", "valence"])
    rows.add_column("image", [str(secret)] * len(rows)).to_parquet(str(tmp_path / "hostile.parquet"))
    merged = datasets.load_dataset("feid", data_dir=str(root), split="train", selection=SMALL,
                                   annotations=str(tmp_path / "hostile.parquet"))  # fmt: skip
    faces = merged.cast_column("image", datasets.Image(decode=False))["image"]
    assert faces == feid.cast_column("image", datasets.Image(decode=False))["image"]
    assert all(face["bytes"] and face["path"] != str(secret) for face in faces)
