"""Labels -> instruction conversations for vision-LLM fine-tuning (LLaMA-Factory, ms-swift, TRL, LLaVA).

One conversation per face: a question and an answer for each of the three tasks (expression, valence/arousal, AUs)
the row has a final label for, built from that label and, when present, its description. A level that is missing,
or was left unfilled because its annotation was rejected, gets no question: nothing is ever answered without a
label. The answer states the label first, in a fixed format, and only then the description, so a parser never has
to read prose; the structured label columns stay beside the chat columns anyway (docs/peers.md §2.3).

Several phrasings per question are chosen per sample by a seeded hash, so the same seed gives the same dataset.
Formats (docs/peers.md §4): `messages` as role/content turns with one `<image>` placeholder in the first user turn and
`images` as a list with the face (LLaMA-Factory sharegpt with role/content tags, ms-swift), or TRL's typed content
blocks (`style="typed"`), or LLaVA JSON with image files (`export_llava`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import datasets
import PIL.Image

from seke_hf.columns import CHAT_IMAGES_COLUMN, IMAGE_COLUMN, MESSAGES_COLUMN
from seke_hf.knowledge import ACTION_UNITS
from seke_hf.schema import AUS, EXPRESSIONS, LEVELS, active_aus, coded_aus, has_aus, has_expression, has_valence_arousal

IMAGE_PLACEHOLDER = "<image>"
"""The image token LLaMA-Factory, ms-swift and LLaVA expect once per image in the text."""

QUESTIONS: dict[str, tuple[str, ...]] = {
    "expression": (
        "Which basic emotion does this face show?",
        "What facial expression does the person in this image have?",
        "Classify the facial expression in this image.",
        "Look at the face. Which emotion is it expressing?",
        "What emotion can you read from this person's face?",
    ),
    "valence_arousal": (
        "Estimate the valence and arousal of this facial expression, each on a scale from -1 to 1.",
        "How positive or negative (valence) and how calm or excited (arousal) is this face, from -1 to 1?",
        "Rate the valence and the arousal shown by this face between -1 and 1.",
        "On the valence/arousal circumplex, where does this facial expression lie (both from -1 to 1)?",
    ),
    "aus": (
        "Which facial action units (AUs) are active in this face?",
        "List the FACS action units that are present in this facial expression.",
        "Which action units can you detect on this face?",
        "Identify the active facial action units in this image.",
    ),
}
"""Question phrasings per task; one is chosen per sample and task by a seeded hash."""

EXPRESSION_OPTIONS = "Answer with one of: " + ", ".join(e for e in EXPRESSIONS if e != "other") + ", or other."
"""Appended to the expression question, so the answer space is closed (docs/peers.md §2.3, recommendation 1)."""

AU_SUBSET_QUESTION = "Which of these facial action units are active in this face: {aus}?"
"""Used instead of QUESTIONS["aus"] when only some AUs are coded (BP4D, Aff-Wild2), so "not listed" means absent."""

Style = Literal["placeholder", "typed"]
D = TypeVar("D", datasets.Dataset, datasets.DatasetDict)


# -- answerable levels and answers ---------------------------------------------------------------------------------


def answerable_levels(row: Mapping[str, Any], levels: Iterable[str] = LEVELS) -> list[str]:
    """The levels of `row` with a final label: present in the row, and not marked missing by the annotator."""
    provenance = row.get("provenance") or {}
    present = {"expression": has_expression, "valence_arousal": has_valence_arousal, "aus": has_aus}
    return [level for level in levels if provenance.get(level) != "missing" and present[level](row)]


def answer(row: Mapping[str, Any], level: str, with_description: bool = True) -> str:
    """The label of `level` in a fixed format, then its description if the row has one."""
    if level == "expression":
        expression = row["expression"]
        name = expression if isinstance(expression, str) else EXPRESSIONS[expression]
        text = f"{name.capitalize()}."
    elif level == "valence_arousal":
        text = f"Valence {row['valence']:.2f}, arousal {row['arousal']:.2f}."
    elif level == "aus":
        active = active_aus(row["aus"])
        text = ", ".join(f"{au} ({ACTION_UNITS[au].facs_name})" for au in active) + "." if active else "None."
    else:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
    description = ((row.get("descriptions") or {}).get(level) or "").strip() if with_description else ""
    return f"{text} {description}" if description else text


def question(row: Mapping[str, Any], level: str, seed: int = 0) -> str:
    """A seeded choice among the phrasings of `level` (the same for the same seed and sample)."""
    phrasings = QUESTIONS[level]
    text = phrasings[_pick(seed, row["sample_id"], level, len(phrasings))]
    if level == "expression":
        return f"{text} {EXPRESSION_OPTIONS}"
    if level == "aus":
        coded = coded_aus(row["aus"])
        if len(coded) < len(AUS):
            return AU_SUBSET_QUESTION.format(aus=", ".join(coded))
    return text


def qa_pairs(
    row: Mapping[str, Any], seed: int = 0, levels: Iterable[str] = LEVELS, with_description: bool = True
) -> list[tuple[str, str, str]]:
    """(level, question, answer) for every answerable level of `row`, in LEVELS order."""
    return [
        (level, question(row, level, seed), answer(row, level, with_description))
        for level in answerable_levels(row, levels)
    ]


def conversation(pairs: Sequence[tuple[str, str, str]], style: Style = "placeholder") -> list[dict[str, Any]]:
    """Turns of one conversation; the image goes with the first user turn (as a placeholder or a typed block)."""
    messages: list[dict[str, Any]] = []
    for i, (_, q, a) in enumerate(pairs):
        if style == "placeholder":
            messages.append({"role": "user", "content": f"{IMAGE_PLACEHOLDER}{q}" if i == 0 else q})
            messages.append({"role": "assistant", "content": a})
        elif style == "typed":
            blocks = [{"type": "image"}] if i == 0 else []
            messages.append({"role": "user", "content": [*blocks, {"type": "text", "text": q}]})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        else:
            raise ValueError(f"style must be 'placeholder' or 'typed', not {style!r}")
    return messages


def _pick(seed: int, sample_id: str, level: str, n: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{sample_id}\x00{level}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


# -- datasets ------------------------------------------------------------------------------------------------------


def chat_features(style: Style) -> datasets.Features:
    text = datasets.Value("string")
    content = text if style == "placeholder" else datasets.List({"type": text, "text": text})
    return datasets.Features(
        {
            MESSAGES_COLUMN: datasets.List({"role": text, "content": content}),
            CHAT_IMAGES_COLUMN: datasets.List(datasets.Image()),
        }
    )


class ChatBuilder:
    """The `Dataset.map(batched=True)` callable of `to_chat` (a class, so `datasets` can fingerprint its settings)."""

    def __init__(self, seed: int, levels: Sequence[str], style: Style, with_description: bool):
        self.seed, self.levels, self.style, self.with_description = seed, tuple(levels), style, with_description

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        n = len(batch["sample_id"])
        rows = [{name: values[i] for name, values in batch.items()} for i in range(n)]
        messages = [
            conversation(qa_pairs(row, self.seed, self.levels, self.with_description), self.style) for row in rows
        ]
        return {MESSAGES_COLUMN: messages, CHAT_IMAGES_COLUMN: [[row[IMAGE_COLUMN]] for row in rows]}


def to_chat(
    ds: D,
    *,
    seed: int = 0,
    levels: Sequence[str] = LEVELS,
    style: Style = "placeholder",
    with_description: bool = True,
    keep_image: bool = False,
    num_proc: int | None = None,
) -> D:
    """Add `messages` and `images` (the face, in a list) to `ds`; rows with nothing answerable are left out.

    `style="placeholder"`: string contents with `<image>` in the first user turn (LLaMA-Factory, ms-swift).
    `style="typed"`: TRL's content blocks, `{"type": "image"}` then `{"type": "text", "text": ...}` in the first
    user turn, as TRL's `prepare_multimodal_messages` makes them. Arrow stores a list of blocks as one struct type,
    so a block read back has both fields: the image block is `{"type": "image", "text": None}`, as in TRL's own
    example dataset (HuggingFaceH4/llava-instruct-mix-vsft); chat templates pick blocks by `type`.
    The face moves from `image` to `images` (a one-item list, what TRL, LLaMA-Factory and ms-swift read); the label
    columns stay; `image` is dropped unless `keep_image` (it would store every face twice).
    """
    if isinstance(ds, datasets.DatasetDict):
        options = {"seed": seed, "levels": levels, "style": style, "with_description": with_description}
        return datasets.DatasetDict(
            {split: to_chat(d, **options, keep_image=keep_image, num_proc=num_proc) for split, d in ds.items()}
        )
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown levels {sorted(unknown)}; expected some of {LEVELS}")
    label_columns = [c for c in _LABEL_COLUMNS if c in ds.column_names]
    ds = ds.filter(
        _HasAnswer(tuple(levels), tuple(label_columns)),
        batched=True,
        input_columns=label_columns,
        num_proc=num_proc,
        desc="Keeping rows with a label",
    )
    raw = ds.cast_column(IMAGE_COLUMN, datasets.Image(decode=False))
    features = datasets.Features({**raw.features, **chat_features(style)})
    out = raw.map(
        ChatBuilder(seed, levels, style, with_description),
        batched=True,
        features=features,
        num_proc=num_proc,
        desc="Writing conversations",
    )
    out = out.cast_column(IMAGE_COLUMN, datasets.Image())
    return out if keep_image else out.remove_columns(IMAGE_COLUMN)


_LABEL_COLUMNS = ("expression", "valence", "arousal", "aus", "provenance")


class _HasAnswer:
    """Filter: does a row have at least one answerable level? (reads the label columns only, never the image)"""

    def __init__(self, levels: tuple[str, ...], names: tuple[str, ...]):
        self.levels, self.names = levels, names

    def __call__(self, *columns: list[Any]) -> list[bool]:
        return [bool(answerable_levels(dict(zip(self.names, values, strict=True)), self.levels))
                for values in zip(*columns, strict=True)]  # fmt: skip


# -- LLaVA ---------------------------------------------------------------------------------------------------------


def export_llava(ds: datasets.Dataset, path: str | os.PathLike, image_folder: str = "images") -> Path:
    """Write LLaVA JSON (`id`, `image`, `conversations` of human/gpt turns) and the face files beside it.

    `ds` is a `to_chat` dataset (placeholder style). Images are written as their original bytes under
    `<folder of path>/<image_folder>/<sample_id>.<ext>`; `image` paths are relative to that folder's parent, as
    LLaVA's `--image_folder` expects.
    """
    if MESSAGES_COLUMN not in ds.column_names:
        raise ValueError("export_llava needs a `to_chat` dataset (a `messages` column)")
    path = Path(path)
    base = path.parent
    raw = ds.cast_column(CHAT_IMAGES_COLUMN, datasets.List(datasets.Image(decode=False)))
    records = []
    for row in raw:
        turns = []
        for message in row[MESSAGES_COLUMN]:
            content = message["content"]
            if not isinstance(content, str):
                raise ValueError("export_llava needs placeholder-style messages (to_chat(style='placeholder'))")
            if content.startswith(IMAGE_PLACEHOLDER):
                content = f"{IMAGE_PLACEHOLDER}\n{content[len(IMAGE_PLACEHOLDER) :]}"
            turns.append({"from": "human" if message["role"] == "user" else "gpt", "value": content})
        image = row[CHAT_IMAGES_COLUMN][0]
        relative = f"{image_folder}/{row['sample_id']}{_suffix(image)}"
        target = base / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes())
        records.append({"id": row["sample_id"], "image": relative, "conversations": turns})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def _suffix(image: Mapping[str, Any]) -> str:
    """The file extension of an image payload, from its bytes (a stored path may name another format)."""
    data = image.get("bytes")
    if data is None:
        return Path(image["path"]).suffix.lower() or ".jpg"
    with PIL.Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "JPEG").lower()
    return {"jpeg": ".jpg"}.get(fmt, f".{fmt}")
