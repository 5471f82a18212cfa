"""Synthetic labelled faces for the annotator tests (the simulated vision LLM's truth)."""

from __future__ import annotations

import datasets

from seke_hf.schema import AUS, EXPRESSIONS, FEATURES, aus_from_active, empty_row
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS
from seke_hf.synthetic.faces import draw_face

HIDDEN = ("expression", "valence_arousal", "aus")


def labelled(n: int, offset: int = 0) -> datasets.Dataset:
    """Fully labelled synthetic faces (the simulator's truth)."""
    rows = []
    for i in range(offset, offset + n):
        expression = EXPRESSIONS[i % 8]
        row = empty_row(f"synth/{i:04d}", "synth", subject=f"S{i % 5}", image=draw_face(i, expression, size=(64, 64)))
        row["expression"] = EXPRESSIONS.index(expression)
        row["valence"], row["arousal"] = VA_ANCHORS[expression]
        row["aus"] = aus_from_active(PROTOTYPE_AUS[expression])
        row["au_intensity"] = {au: 2 * v for au, v in row["aus"].items()}
        rows.append(row)
    return datasets.Dataset.from_list(rows, features=FEATURES)


def hide_one_level(full: datasets.Dataset) -> datasets.Dataset:
    """Row i loses level i % 3, as corpora lack one level or another."""

    def hide(row, i):
        level = HIDDEN[i % 3]
        if level == "expression":
            row["expression"] = -1
        elif level == "valence_arousal":
            row["valence"] = row["arousal"] = None
        else:
            row["aus"] = dict.fromkeys(AUS, -1)
        return row

    return full.map(hide, with_indices=True)
