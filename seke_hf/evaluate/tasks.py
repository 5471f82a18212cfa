"""The three FEAB questions: what is asked, and how the answer slot is forced.

Each task is asked on its own, so that one answer cannot lean on another (a model told nothing about the expression
must find the AUs in the face). The answer slot is forced in one of two ways:
- `json_schema`: a strict JSON schema (`response_format`), for servers that support structured output; the
  expression is an enum of EXPRESSIONS, the AUs an array of names from AUS;
- `tag`: the model may think aloud but must put its answer in `<answer>...</answer>`, read by the strict parser;
  for servers that reject `response_format`.
Either way the reply goes through the same strict parser (`parse.parse_answer`), so a malformed structured reply
is caught too.

The prompts name only their own task's vocabulary (no AU names in the expression question, no expression names in
the AU question), so a question never hints at another task's answer. Changing a prompt changes `FEAB_PROMPT_VERSION`,
which is recorded with every prediction and report.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from seke_hf.schema import AUS, EXPRESSIONS, LEVELS

FEAB_PROMPT_VERSION = "feab-eval-1"
"""The version of the FEAB questions' wording, recorded with every prediction and report (as `prompt_version`)."""

ANSWER_FORMATS = ("json_schema", "tag")

SYSTEM_PROMPT = (
    "You are a careful observer of human faces taking part in a perception test. You are shown one face image and "
    "asked one question about it. Judge from the face itself, not from the background, and always give an answer "
    "in the requested form, even when you are unsure."
)


@dataclass(frozen=True)
class Task:
    """One FEAB question."""

    name: str
    question: str
    json_instruction: str
    tag_instruction: str
    schema: dict[str, Any]

    def messages(self, image_url: str, answer_format: str) -> list[dict[str, Any]]:
        """System prompt first and the image last, so providers' prompt caching covers the static part."""
        instruction = {"json_schema": self.json_instruction, "tag": self.tag_instruction}[answer_format]
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"{self.question}\n{instruction}"},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            },
        ]

    def response_format(self, answer_format: str) -> dict[str, Any] | None:
        if answer_format != "json_schema":
            return None
        spec = {"name": f"feab_{self.name}", "strict": True, "schema": self.schema}
        return {"type": "json_schema", "json_schema": spec}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _au_glossary() -> str:
    from seke_hf.knowledge import ACTION_UNITS

    return ", ".join(f"{au} ({ACTION_UNITS[au].facs_name})" for au in AUS)


@cache
def _tasks() -> dict[str, Task]:
    names = ", ".join(EXPRESSIONS)
    return {
        "expression": Task(
            name="expression",
            question=f"Which facial expression does this face show? Choose exactly one of: {names}.",
            json_instruction='Answer with a JSON object: {"expression": "<one name from the list>"}.',
            tag_instruction="You may reason briefly first. Then give only the name, in this form: "
            "<answer>expression name</answer>",
            schema=_object({"expression": {"type": "string", "enum": list(EXPRESSIONS)}}),
        ),
        "valence_arousal": Task(
            name="valence_arousal",
            question="Rate the affective state this face shows. Valence: how unpleasant (-1) or pleasant (+1) it "
            "looks. Arousal: how calm or sleepy (-1) or excited and activated (+1) it looks. Both are numbers from "
            "-1 to 1, with 0 in the middle.",
            json_instruction='Answer with a JSON object: {"valence": <number>, "arousal": <number>}.',
            tag_instruction="You may reason briefly first. Then give both numbers in this form: "
            "<answer>valence: V, arousal: A</answer>",
            schema=_object({"valence": {"type": "number"}, "arousal": {"type": "number"}}),
        ),
        "aus": Task(
            name="aus",
            question=f"Which FACS action units are visibly active in this face? Consider only these: {_au_glossary()}.",
            json_instruction='Answer with a JSON object: {"action_units": [<the active AU codes, e.g. "AU4">]}, '
            "an empty list if none is active.",
            tag_instruction="You may reason briefly first. Then list only the active ones in this form: "
            "<answer>AU codes separated by commas, or none</answer>",
            schema=_object({"action_units": {"type": "array", "items": {"type": "string", "enum": list(AUS)}}}),
        ),
    }


TASK_NAMES: tuple[str, ...] = LEVELS
"""The three FEAB tasks, named after the label levels they score."""


def get_task(name: str) -> Task:
    try:
        return _tasks()[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}") from None


def check_tasks(tasks: Any) -> tuple[str, ...]:
    """A validated tuple of task names (a single name is accepted)."""
    names = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    for name in names:
        get_task(name)
    if not names:
        raise ValueError(f"no task given; expected some of {', '.join(TASK_NAMES)}")
    return names
