"""The strict answer parser against answers written the way real vision LLMs write them."""

from __future__ import annotations

import pytest

from seke_hf.evaluate.parse import (
    EXPRESSION_SYNONYMS,
    OK,
    REFUSAL,
    UNPARSEABLE,
    parse_answer,
    parse_aus,
    parse_expression,
    parse_valence_arousal,
)
from seke_hf.schema import EXPRESSIONS

# (answer, expected label or status)
EXPRESSION_CASES = [
    # plain, with punctuation, case and markdown
    ("happiness", "happiness"),
    ("Happiness.", "happiness"),
    ("**Sad**", "sadness"),
    ("other", "other"),
    ("  Surprise\n", "surprise"),
    # synonyms
    ("The person looks happy.", "happiness"),
    ("This face expresses joy", "happiness"),
    ("She seems angry", "anger"),
    ("The man appears scared", "fear"),
    ("They look afraid of something", "fear"),
    ("He is clearly disgusted", "disgust"),
    ("A contemptuous smirk", "contempt"),
    ("surprised", "surprise"),
    ("The expression is neutral", "neutral"),
    # negations
    ("The person is not happy; they look sad.", "sadness"),
    ("happy, not sad", "happiness"),
    ("She looks sad rather than angry", "sadness"),
    ("Neither happy nor sad, but neutral", "neutral"),
    ("There is no sign of anger here, the face is calm and neutral", "neutral"),
    ("Fear is absent; the face shows surprise.", "surprise"),
    ("I don't think she is sad. She is angry.", "anger"),
    ("The expression is not neutral; it is happy", "happiness"),
    ("I'm not sure, but I think it's fear.", "fear"),
    ("Happiness (joy)", "happiness"),
    ("not only happy but also surprised", UNPARSEABLE),
    ("The person is not happy.", UNPARSEABLE),
    # words that only look like negations or labels
    ("The nose is wrinkled and the upper lip raised: disgust", "disgust"),
    ("A normal, happy face", "happiness"),
    ("No doubt, this is happiness", "happiness"),
    ("She is unhappy", UNPARSEABLE),
    ("I'd be happy to help! The face shows sadness.", "sadness"),
    ("The other person in the background is smiling, but this face is neutral", "neutral"),
    # several labels in one answer
    ("happiness or surprise", UNPARSEABLE),
    ("The face shows a mix of fear and surprise.", UNPARSEABLE),
    ("<answer>happiness, surprise</answer>", UNPARSEABLE),
    # the answer tag decides when prose around it names other labels
    ("It could be fear or surprise; the raised brows fit both. <answer>surprise</answer>", "surprise"),
    ("Thinking: not angry, maybe sad.\n<answer>Sadness</answer>", "sadness"),
    ("<answer>happy</answer> ... <answer>happiness</answer>", "happiness"),
    ("<answer>happy</answer> <answer>sad</answer>", UNPARSEABLE),
    ("<answer></answer>", UNPARSEABLE),
    ("The face shows <answer>fear", "fear"),  # truncated after the tag opened
    # JSON
    ('{"expression": "anger"}', "anger"),
    ('```json\n{"expression": "Fear", "confidence": 0.8}\n```', "fear"),
    ('Here you go: {"emotion": "joyful"}', "happiness"),
    ('{"expression": "anger", "description": "brows lowered", ', UNPARSEABLE),  # truncated JSON
    ('{"description": "a smiling face"}', UNPARSEABLE),
    ('{"expression": 4}', UNPARSEABLE),
    # refusals and non-answers
    ("I can't determine emotions from images.", REFUSAL),
    ("As an AI, I cannot infer how a person feels.", REFUSAL),
    ("I'm sorry, but I can't help with identifying the emotions of people in images.", REFUSAL),
    ("I cannot tell whether this person is happy or sad.", REFUSAL),
    ("As an AI I cannot know how someone feels, but the face appears to show happiness.", "happiness"),
    ("It is difficult to say, but most likely sadness", "sadness"),
    ("calm", UNPARSEABLE),
    ("The person looks relaxed and content.", UNPARSEABLE),
    ("", UNPARSEABLE),
    (None, UNPARSEABLE),
    ("The image shows a face", UNPARSEABLE),
    ("<answer>I cannot determine the emotion</answer>", REFUSAL),
    # missing punctuation is not a problem (one peer scorer crashes on it)
    ("the face looks sad to me", "sadness"),
    # a reasoning model's deliberation is not the answer
    ("<think>Fear or surprise? The mouth is open... surprise.</think>\nSurprise", "surprise"),
    ("<think>It might be anger, or disgust", UNPARSEABLE),  # cut off while thinking
]


@pytest.mark.parametrize(("answer", "expected"), EXPRESSION_CASES)
def test_expression(answer, expected):
    parsed = parse_expression(answer)
    if expected in (UNPARSEABLE, REFUSAL):
        assert parsed.status == expected, parsed
        assert parsed.fields == {}
        assert parsed.reason
    else:
        assert parsed.status == OK, parsed
        assert parsed.fields == {"expression": expected}


def test_expression_synonyms_are_unambiguous():
    words = [w for ws in EXPRESSION_SYNONYMS.values() for w in ws]
    assert len(words) == len(set(words))
    assert set(EXPRESSION_SYNONYMS) == set(EXPRESSIONS)
    for label in EXPRESSIONS:
        assert parse_expression(label).fields == {"expression": label}


def test_several_labels_are_named_in_the_reason():
    parsed = parse_expression("happy and sad at once")
    assert parsed.status == UNPARSEABLE
    assert "happiness" in parsed.reason and "sadness" in parsed.reason


AU_CASES = [
    ("AU6, AU12, AU25", ["AU6", "AU12", "AU25"]),
    ("<answer>AU4, AU7</answer>", ["AU4", "AU7"]),
    ("<answer>none</answer>", []),
    ("none", []),
    ("No action units are active.", []),
    ('{"action_units": []}', []),
    ('{"action_units": ["AU12", "au6", 25]}', ["AU6", "AU12", "AU25"]),
    ('{"AU1": 0, "AU2": 0, "AU12": 1, "AU6": true}', ["AU6", "AU12"]),
    ('{"action_units": {"AU4": "present", "AU15": "absent"}}', ["AU4"]),
    ('{"action_units": ["smile"]}', UNPARSEABLE),
    # "AU1" never matches inside "AU12"; spelling variants
    ("AU12", ["AU12"]),
    ("AU 12 and AU-1", ["AU1", "AU12"]),
    ("AU06 and AU012", ["AU6", "AU12"]),
    ("AU12C and AU6B are visible", ["AU6", "AU12"]),
    ("AU1+2+4", ["AU1", "AU2", "AU4"]),
    ("AUs 6 and 12", ["AU6", "AU12"]),
    ("<answer>6, 12</answer>", ["AU6", "AU12"]),
    ('["AU25", "AU26"]', ["AU25", "AU26"]),
    ("Action Unit 17 is active.", ["AU17"]),
    # negations
    ("AU6 and AU12 are present; AU4 is absent.", ["AU6", "AU12"]),
    ("AU12 is present, no AU4", ["AU12"]),
    ("There is no AU1, AU2 or AU4, but AU12 is clearly active.", ["AU12"]),
    ("AU12 is present but not AU6.", ["AU12"]),
    ("The smile involves AU12 without AU6.", ["AU12"]),
    ("AU4 is absent.", []),
    ("AU1: 0, AU2: 0, AU12: 1", ["AU12"]),
    (
        "| AU | Name | Present |\n|---|---|---|\n| AU4 | Brow Lowerer | Absent |\n| AU12 | Lip Corner Puller | Yes |",
        ["AU12"],
    ),
    ("| AU4 | brows drawn together, lowered | no |\n| AU6 | cheeks raised | ✓ |", ["AU6"]),
    ("AU6 (cheek raiser): 1\nAU4 (brow lowerer): 0", ["AU6"]),
    ("AU12 | ✗", []),
    ("AU12: 0.8", ["AU12"]),  # a score, not the value 0
    ("- AU4 (Brow Lowerer): not present\n- AU12 (Lip Corner Puller): present", ["AU12"]),
    ("AU6 - yes\nAU7 - no", ["AU6"]),
    ("Present: AU6, AU12\nAbsent: AU1, AU4", ["AU6", "AU12"]),
    ("**Active AUs:**\n- AU6\n- AU12\n\n**Absent AUs:**\n- AU15\n- AU17", ["AU6", "AU12"]),
    ("AU6 and AU12 aren't active, AU4 is.", ["AU4"]),
    ("I don't see any AU4; AU12 is visible", ["AU12"]),
    ("AU4 isn't present", []),
    ("The person is not frowning, so AU12 and AU25 are active", ["AU12", "AU25"]),
    # "nose", "normal", "know" are not negations
    ("The nose wrinkles (AU9) and the lips part (AU25)", ["AU9", "AU25"]),
    ("Normal face with AU12", ["AU12"]),
    # contradictions and non-answers
    ("AU12 is present. AU12 is absent.", UNPARSEABLE),
    ("No action units are active except AU12 maybe", ["AU12"]),
    ("None of the action units, AU12 is active", UNPARSEABLE),
    ("The face is smiling.", UNPARSEABLE),
    ("I cannot identify facial action units from images.", REFUSAL),
    # AUs outside the 17 cannot be scored and are dropped
    ("AU12, AU43", ["AU12"]),
    ("AU12 intensity 0.8", ["AU12"]),
]

AU_NAME_CASES = [
    ("lip corner puller and cheek raiser", ["AU6", "AU12"]),
    ("Inner brow raiser, brow lowerer; no lip corner puller", ["AU1", "AU4"]),
    ("AU12 (Lip Corner Puller) is active", ["AU12"]),
    ("AU4 (brow lowerer) is absent; AU12 (lip-corner puller) present", ["AU12"]),
    ('{"action_units": ["AU12 (lip corner puller)", "jaw drop"]}', ["AU12", "AU26"]),
    ("The lips part and the jaw drop is visible", ["AU25", "AU26"]),
    ("The lip tightener is active, the lid tightener is not", ["AU23"]),
]


@pytest.mark.parametrize(("answer", "expected"), AU_CASES + AU_NAME_CASES)
def test_aus(answer, expected):
    parsed = parse_aus(answer)
    if expected in (UNPARSEABLE, REFUSAL):
        assert parsed.status == expected, parsed
        assert parsed.fields == {}
    else:
        assert parsed.status == OK, parsed
        assert parsed.fields == {"aus": expected}


VA_CASES = [
    ('{"valence": 0.6, "arousal": -0.2}', (0.6, -0.2)),
    ('{"valence": "0.6", "arousal": "-.2"}', (0.6, -0.2)),
    ("<answer>valence: 0.35, arousal: 0.10</answer>", (0.35, 0.1)),
    ("Valence: -0.5\nArousal: 0.7.", (-0.5, 0.7)),
    ("Valence (-1 to 1): 0.5, arousal (-1 to 1): 0.2", (0.5, 0.2)),
    ("The valence is slightly negative (−0.3) and the arousal is low (-0.6).", (-0.3, -0.6)),
    ("On a scale from -1 to 1, valence = +0.4 and arousal = 0", (0.4, 0.0)),
    ("<answer>0.3, -0.2</answer>", (0.3, -0.2)),
    ("(0.3, -0.2)", (0.3, -0.2)),
    ("valence 0.5", UNPARSEABLE),  # half a pair
    ("valence: 0.5, arousal: 1.5", UNPARSEABLE),  # out of the scale: never clipped
    ('{"valence": 3, "arousal": 5}', UNPARSEABLE),
    ('{"valence": "positive", "arousal": 0.1}', UNPARSEABLE),
    ('{"valence": true, "arousal": 0.1}', UNPARSEABLE),
    ("valence: 0.2, later valence: 0.6, arousal: 0.1", UNPARSEABLE),
    ("valence and arousal: 0.3, 0.5", UNPARSEABLE),  # which is which is not stated
    ("The person looks pleasant and calm.", UNPARSEABLE),
    ("I'm unable to determine valence or arousal from an image.", REFUSAL),
    ("<answer>valence: 0.2, arousal: 0.1</answer> <answer>valence: 0.2, arousal: 0.1</answer>", (0.2, 0.1)),
]


@pytest.mark.parametrize(("answer", "expected"), VA_CASES)
def test_valence_arousal(answer, expected):
    parsed = parse_valence_arousal(answer)
    if expected in (UNPARSEABLE, REFUSAL):
        assert parsed.status == expected, parsed
        assert parsed.fields == {}
    else:
        assert parsed.status == OK, parsed
        assert parsed.fields == pytest.approx({"valence": expected[0], "arousal": expected[1]})


def test_parse_answer_dispatches_and_rejects_unknown_tasks():
    assert parse_answer("expression", "joy").fields == {"expression": "happiness"}
    assert parse_answer("aus", "AU12").fields == {"aus": ["AU12"]}
    assert parse_answer("valence_arousal", "0.1, 0.2").fields == {"valence": 0.1, "arousal": 0.2}
    with pytest.raises(ValueError, match="unknown task 'emotion'"):
        parse_answer("emotion", "joy")


def test_to_dict_is_json_ready():
    assert parse_expression("sad").to_dict() == {"status": OK, "fields": {"expression": "sadness"}, "reason": ""}
    refused = parse_expression("I cannot determine the emotion.").to_dict()
    assert refused["status"] == REFUSAL and refused["fields"] is None
