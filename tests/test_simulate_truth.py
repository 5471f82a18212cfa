"""The simulated model's truth table: recognising re-encoded faces, files, and building it from a Dataset."""

from __future__ import annotations

import io
import json

import datasets
import PIL.Image
import pytest

from seke_hf.schema import EXPRESSIONS, FEATURES, aus_from_active, empty_row, expression_index
from seke_hf.simulate import Labels, TruthTable, labels_from_row, truth_from_dataset
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
from seke_hf.synthetic.faces import draw_face, face_bytes


def reencoded(image: PIL.Image.Image, size: tuple[int, int], quality: int, grey: bool = False) -> bytes:
    buffer = io.BytesIO()
    image.convert("L" if grey else "RGB").resize(size, PIL.Image.BILINEAR).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def table_and_faces():
    table, faces = TruthTable(), {}
    for i in range(60):
        expression = EXPRESSIONS[i % len(EXPRESSIONS)]
        faces[f"f{i}"] = draw_face(500 + i, expression=expression, size=(120, 100))
        table.add(f"f{i}", Labels(expression, 0.0, 0.0), faces[f"f{i}"], difficulty=i / 59)
    return table, faces


@pytest.mark.parametrize(
    ("size", "quality", "grey"), [((120, 100), 95, False), ((48, 40), 40, False), ((240, 200), 60, True)]
)
def test_resized_and_reencoded_faces_are_recognised(table_and_faces, size, quality, grey):
    table, faces = table_and_faces
    for key, face in faces.items():
        match = table.identify(reencoded(face, size, quality, grey))
        assert match.entry is not None and match.entry.key == key and match.image_key == key


def test_unknown_faces_and_unreadable_images(table_and_faces):
    table, _ = table_and_faces
    match = table.identify(face_bytes(99_999, expression="happiness"))
    assert match.entry is None and match.image_key.startswith("unknown/") and match.distance > table.match_threshold
    with pytest.raises(ValueError, match="could not be decoded"):
        table.identify(b"not an image")
    with pytest.raises(ValueError, match="duplicate key"):
        table.add("f0", Labels("neutral", 0, 0), draw_face(1), difficulty=0.5)
    with pytest.raises(ValueError, match="difficulty"):
        table.add("new", Labels("neutral", 0, 0), draw_face(1), difficulty=1.5)


def test_jsonl_roundtrip_image_paths_and_bad_lines(tmp_path, table_and_faces):
    table, faces = table_and_faces
    table.save(tmp_path / "truth.jsonl")
    loaded = TruthTable.load(tmp_path / "truth.jsonl")
    assert [e.to_json() for e in loaded] == [e.to_json() for e in table]
    assert loaded.identify(reencoded(faces["f7"], (60, 50), 50)).entry.key == "f7"

    faces["f3"].save(tmp_path / "face.png")
    line = {
        "key": "by-path",
        "expression": "fear",
        "valence": -0.5,
        "arousal": 0.6,
        "aus": ["AU1"],
        "image": "face.png",
    }
    (tmp_path / "paths.jsonl").write_text(json.dumps(line) + "\n\n")
    by_path = TruthTable.load(tmp_path / "paths.jsonl")
    entry = by_path.identify(reencoded(faces["f3"], (90, 75), 70)).entry
    assert entry.key == "by-path" and entry.labels.aus == {"AU1"} and 0.0 <= entry.difficulty <= 1.0

    (tmp_path / "bad.jsonl").write_text(json.dumps({**line, "expression": "joy"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: .*unknown expression 'joy'"):
        TruthTable.load(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        TruthTable.load(tmp_path / "missing.jsonl")


def _row(i: int, **labels) -> dict:
    row = empty_row(f"test/{i}", "test", image=draw_face(700 + i))
    row.update(labels)
    return row


def test_truth_from_a_unified_dataset_fills_what_the_corpus_lacks():
    rows = [
        _row(0, expression=expression_index("happiness")),
        _row(1, valence=-0.45, arousal=0.8),
        _row(2, aus=aus_from_active(["AU1", "AU2", "AU5", "AU26"])),
        _row(3),
        _row(4, expression=expression_index("sadness"), aus=aus_from_active(["AU1"], coded=["AU1", "AU4"])),
    ]
    ds = datasets.Dataset.from_list(rows, features=FEATURES)
    table = truth_from_dataset(ds)
    happy = table["test/0"].labels
    assert happy == Labels("happiness", *VA_ANCHORS["happiness"], frozenset(PROTOTYPE_AUS["happiness"]))
    assert table["test/1"].labels.expression == "fear"  # nearest circumplex anchor
    assert table["test/2"].labels.expression == "surprise"  # closest AU prototype
    assert table["test/3"].labels.expression == "neutral"
    # Coded AUs are kept (AU4 coded absent stays absent); uncoded ones come from the prototype.
    assert table["test/4"].labels.aus == {"AU1", "AU15"}
    assert labels_from_row(rows[4]) == table["test/4"].labels
    again = truth_from_dataset(ds)
    assert [e.difficulty for e in again] == [e.difficulty for e in table]
    assert all(0.0 <= e.difficulty <= 1.0 for e in table)
    assert table.identify(reencoded(draw_face(702), (56, 56), 50)).entry.key == "test/2"

    graded = truth_from_dataset(ds.add_column("hardness", [0.0, 0.25, 0.5, 0.75, 1.0]), difficulty="hardness")
    assert [e.difficulty for e in graded] == [0.0, 0.25, 0.5, 0.75, 1.0]
