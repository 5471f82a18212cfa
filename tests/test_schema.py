"""The unified schema: the fixed label sets and features, and the helpers that build and read rows."""

from __future__ import annotations

import datasets
import pytest

from seke_hf.schema import (
    AUS,
    EXPRESSIONS,
    FEATURES,
    active_aus,
    annotated_levels,
    au_name,
    aus_from_active,
    coded_aus,
    empty_row,
    expression_index,
    has_aus,
    is_known_au,
)


def test_label_sets_are_the_fixed_contract():
    assert EXPRESSIONS == [
        "neutral",
        "anger",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
        "contempt",
        "other",
    ]
    assert [f"AU{n}" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)] == AUS


def test_features_are_the_fixed_contract():
    assert list(FEATURES) == [
        "sample_id", "source", "subject", "image", "frame", "expression", "valence", "arousal", "aus", "au_intensity",
    ]  # fmt: skip
    assert isinstance(FEATURES["image"], datasets.Image)
    assert FEATURES["frame"].dtype == "int32"
    assert FEATURES["expression"].names == EXPRESSIONS
    assert FEATURES["valence"].dtype == FEATURES["arousal"].dtype == "float32"
    for column in ("aus", "au_intensity"):
        assert list(FEATURES[column]) == AUS
        assert {value.dtype for value in FEATURES[column].values()} == {"int8"}


def test_empty_row_annotates_nothing_and_encodes():
    row = empty_row("rafdb/train_00001", "rafdb", image={"bytes": None, "path": "x.jpg"})
    assert row["expression"] == -1 and row["valence"] is None and row["arousal"] is None and row["frame"] is None
    assert row["aus"] == dict.fromkeys(AUS, -1) == row["au_intensity"]
    assert annotated_levels(row) == []
    ds = datasets.Dataset.from_list(
        [empty_row("ckplus/S005/001/S005_001_00000001", "ckplus", subject="S005", frame=0)], features=FEATURES
    )
    stored = ds[0]
    assert (stored["expression"], stored["frame"], stored["subject"]) == (-1, 0, "S005")
    assert stored["aus"] == dict.fromkeys(AUS, -1)


def test_au_names_and_struct_conversion():
    assert au_name(12) == au_name("12") == au_name("au12") == au_name(" AU12 ") == "AU12"
    assert is_known_au("AU12") and not is_known_au("AU27")
    struct = aus_from_active(["AU12", "au6"])
    assert active_aus(struct) == ["AU6", "AU12"] and coded_aus(struct) == AUS
    partial = aus_from_active(["AU12"], coded=["AU6", "AU12"])
    assert partial["AU12"] == 1 and partial["AU6"] == 0 and partial["AU1"] == -1
    only_active = aus_from_active(["AU4"], coded=None)
    assert coded_aus(only_active) == ["AU4"] and has_aus({"aus": only_active})
    with pytest.raises(ValueError, match="unknown AU"):
        aus_from_active(["AU27"])


def test_expression_index_and_levels():
    assert expression_index("happiness") == 4
    with pytest.raises(ValueError, match="unknown expression"):
        expression_index("happy")
    row = empty_row("x", "y") | {"expression": 4, "valence": 0.5, "arousal": 0.1}
    assert annotated_levels(row) == ["expression", "valence_arousal"]
    row["aus"] = aus_from_active([], coded=["AU1"])
    assert annotated_levels(row) == ["expression", "valence_arousal", "aus"]
