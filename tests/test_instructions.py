"""Instruction data: questions/answers from final labels only, and chat columns read back as each trainer reads them."""

from __future__ import annotations

import io
import json

import datasets
import jinja2
import PIL.Image
import pytest

from seke_hf.instructions import (
    IMAGE_PLACEHOLDER,
    QUESTIONS,
    answer,
    answerable_levels,
    export_llava,
    qa_pairs,
    to_chat,
)
from seke_hf.schema import AUS, EXPRESSIONS, aus_from_active, not_coded_aus
from seke_hf.synthetic.corpora import write_corpora


def _row(**labels):
    row = {
        "sample_id": "x/1",
        "expression": -1,
        "valence": None,
        "arousal": None,
        "aus": not_coded_aus(),
    }
    row.update(labels)
    return row


def test_only_final_labels_are_asked_and_answered():
    row = _row(expression=EXPRESSIONS.index("happiness"), aus=aus_from_active(["AU6", "AU12"]))
    assert answerable_levels(row) == ["expression", "aus"]  # no valence/arousal: none is known
    pairs = qa_pairs(row)
    assert [level for level, _, _ in pairs] == ["expression", "aus"]
    assert pairs[0][2] == "Happiness."
    assert pairs[1][2] == "AU6 (Cheek Raiser), AU12 (Lip Corner Puller)."
    # A level the annotator left unfilled (rejected) is "missing" in its provenance: no question, whatever the value.
    rejected = _row(
        expression=EXPRESSIONS.index("fear"),
        valence=0.1,
        arousal=0.2,
        provenance={"expression": "human", "valence_arousal": "missing", "aus": "missing"},
        status="rejected",
    )
    assert answerable_levels(rejected) == ["expression"]
    assert answerable_levels(_row()) == []


def test_answers_put_the_label_first_then_the_description():
    row = _row(
        valence=-0.456,
        arousal=0.3,
        aus=aus_from_active([], coded=AUS[:12]),
        descriptions={"expression": None, "valence_arousal": " Mildly unpleasant, fairly alert. ", "aus": ""},
    )
    assert answer(row, "valence_arousal") == "Valence -0.46, arousal 0.30. Mildly unpleasant, fairly alert."
    assert answer(row, "valence_arousal", with_description=False) == "Valence -0.46, arousal 0.30."
    assert answer(row, "aus") == "None."
    # Only some AUs coded (BP4D, Aff-Wild2): the question names them, so "not listed" means absent, not unknown.
    assert qa_pairs(row)[1][1] == f"Which of these facial action units are active in this face: {', '.join(AUS[:12])}?"


def test_phrasings_vary_across_samples_and_are_fixed_by_the_seed():
    rows = [_row(sample_id=f"s/{i}", expression=1) for i in range(40)]
    questions = [qa_pairs(r, seed=0)[0][1] for r in rows]
    assert len(set(questions)) == len(QUESTIONS["expression"])
    assert [qa_pairs(r, seed=0)[0][1] for r in rows] == questions
    assert [qa_pairs(r, seed=1)[0][1] for r in rows] != questions


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Corpus rows with each kind of label: expression only (RAF-DB), AUs only (DISFA), partial AUs (BP4D)."""
    root = tmp_path_factory.mktemp("chat") / "ROOT"
    write_corpora(root, corpora=("rafdb", "disfa", "bp4d"))
    ds = datasets.load_dataset("feid", data_dir=str(root), split="train")
    return ds.select(range(0, len(ds), 2))


def _llamafactory_read(example):
    """What LLaMA-Factory's sharegpt converter checks (role/content tags): user/assistant alternate from a user turn,
    and its multimodal plugin: as many `<image>` tokens as images."""
    messages = example["messages"]
    assert len(messages) % 2 == 0 and messages
    for i, message in enumerate(messages):
        assert set(message) == {"role", "content"} and message["role"] == ("user" if i % 2 == 0 else "assistant")
        assert isinstance(message["content"], str)
    assert sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages) == len(example["images"])


def test_chat_columns_load_as_llamafactory_and_ms_swift_read_them(faces, tmp_path):
    chat = to_chat(faces, seed=0)
    assert {"expression", "valence", "arousal", "aus", "sample_id"} <= set(chat.column_names)  # labels stay
    assert "image" not in chat.column_names and len(chat) == len(faces)
    path = tmp_path / "feid_chat.parquet"
    chat.to_parquet(str(path))
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")  # both trainers load this way
    assert isinstance(loaded.features["images"], datasets.List)
    assert isinstance(loaded.features["images"].feature, datasets.Image)
    source = {r["sample_id"]: r["image"] for r in faces.cast_column("image", datasets.Image(decode=False))}
    for example in loaded:
        _llamafactory_read(example)
        assert example["messages"][0]["content"].startswith(IMAGE_PLACEHOLDER)  # ms-swift: <image> in the text
        (image,) = example["images"]
        assert isinstance(image, PIL.Image.Image)
        assert image.tobytes() == PIL.Image.open(io.BytesIO(source[example["sample_id"]]["bytes"])).tobytes()
    by_source = {r["source"]: len(r["messages"]) // 2 for r in loaded}
    assert by_source == {"rafdb": 1, "disfa": 1, "bp4d": 1}  # one task each: the only level these corpora label


# A chat template in the style of the Hugging Face processors TRL calls (`processor.apply_chat_template`).
TEMPLATE = jinja2.Environment().from_string(
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}\n{% endfor %}"
)


def test_typed_blocks_render_as_trl_renders_them(faces):
    chat = to_chat(faces.select(range(6)), style="typed")
    for example in chat:
        messages = example["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
        blocks = [b for m in messages for b in m["content"]]
        assert all(b["type"] in ("image", "text") for b in blocks)
        assert all(isinstance(b["text"], str) for b in blocks if b["type"] == "text")
        assert sum(b["type"] == "image" for b in blocks) == len(example["images"]) == 1
        assert not any(IMAGE_PLACEHOLDER in (b["text"] or "") for b in blocks)  # TRL: no <image> string
        rendered = TEMPLATE.render(messages=messages)
        assert rendered.startswith("user: <|image|>") and rendered.count("<|image|>") == 1


def test_export_llava_writes_json_and_the_original_image_bytes(faces, tmp_path):
    chat = to_chat(faces.select(range(5)))
    path = export_llava(chat, tmp_path / "llava" / "feid.json")
    records = json.loads(path.read_text())
    source = {r["sample_id"]: r["image"]["bytes"] for r in faces.cast_column("image", datasets.Image(decode=False))}
    assert [r["id"] for r in records] == chat["sample_id"]
    for record in records:
        assert set(record) == {"id", "image", "conversations"}
        turns = record["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n") and sum(t["value"].count("<image>") for t in turns) == 1
        assert (path.parent / record["image"]).read_bytes() == source[record["id"]]
    with pytest.raises(ValueError, match="placeholder-style"):
        export_llava(to_chat(faces.select(range(2)), style="typed"), tmp_path / "typed.json")
