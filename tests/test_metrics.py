"""Every FEAB metric against values computed by hand on small cases."""

from __future__ import annotations

import math

import pytest

from seke_hf.evaluate.metrics import (
    UNANSWERED,
    au_metrics,
    ccc,
    expression_metrics,
    pearson,
    regression_metrics,
    rmse,
)


def test_expression_metrics_by_hand():
    refs = ["happiness", "happiness", "happiness", "sadness", "sadness", "anger", "anger"]
    preds = ["happiness", "sadness", None, "sadness", "happiness", "anger", "fear"]
    m = expression_metrics(refs, preds)
    assert m["n"] == 7 and m["answered"] == 6
    assert m["accuracy"] == pytest.approx(3 / 7)  # the unanswered one stays in the denominator
    # anger: tp 1, fp 0, fn 1 -> 2/3; happiness: tp 1, fp 1, fn 2 -> 2/5; sadness: tp 1, fp 1, fn 1 -> 1/2
    assert m["per_class"]["anger"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["happiness"]["f1"] == pytest.approx(2 / 5)
    assert m["per_class"]["happiness"]["precision"] == pytest.approx(1 / 2)
    assert m["per_class"]["happiness"]["recall"] == pytest.approx(1 / 3)
    assert m["per_class"]["sadness"]["f1"] == pytest.approx(1 / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 1 / 2) / 3)
    assert m["uar"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    # fear was predicted but never shown: a column, not a class of the averages
    assert m["classes"] == ["anger", "happiness", "sadness"]
    assert "fear" not in m["per_class"]
    assert m["confusion"] == {
        "rows": ["anger", "happiness", "sadness"],
        "columns": ["anger", "fear", "happiness", "sadness", UNANSWERED],
        "matrix": [[1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0]],
    }


def test_expression_all_unanswered_is_zero_not_undefined():
    m = expression_metrics(["fear", "anger"], [None, None])
    assert m["accuracy"] == 0 and m["macro_f1"] == 0 and m["uar"] == 0
    assert m["confusion"]["columns"] == ["anger", "fear", UNANSWERED]


def test_expression_perfect_and_empty():
    perfect = expression_metrics(["neutral", "contempt"], ["neutral", "contempt"])
    assert perfect["accuracy"] == perfect["macro_f1"] == perfect["uar"] == 1
    empty = expression_metrics([], [])
    assert empty["accuracy"] is None and empty["macro_f1"] is None and empty["classes"] == []


def test_expression_rejects_unknown_names_and_length_mismatch():
    with pytest.raises(ValueError, match="unknown expression"):
        expression_metrics(["happy"], ["happiness"])
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        expression_metrics(["fear", "anger"], ["fear"])


def test_ccc_rmse_pearson_by_hand():
    x, y = [0.1, 0.2, 0.3], [0.2, 0.4, 0.6]
    # means 0.2, 0.4; population variances 0.02/3, 0.08/3; covariance 0.04/3
    # CCC = 2 * 0.04/3 / (0.02/3 + 0.08/3 + 0.2**2) = (0.08/3) / (0.22/3) = 4/11
    assert ccc(x, y) == pytest.approx(4 / 11)
    assert pearson(x, y) == pytest.approx(1.0)
    assert rmse(x, y) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.09) / 3))
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, [-v for v in x]) == pytest.approx(2 * (-0.02 / 3) / (0.04 / 3 + 0.4**2))


def test_regression_edge_cases():
    assert pearson([0.1, 0.2, 0.3], [0.2, 0.2, 0.2]) is None  # constant: undefined, not 0
    assert ccc([0.1, 0.2, 0.3], [0.2, 0.2, 0.2]) == pytest.approx(0.0)
    assert ccc([0.5, 0.5], [0.5, 0.5]) is None
    assert ccc([0.5], [0.4]) is None and pearson([0.5], [0.4]) is None
    assert rmse([], []) is None


def test_regression_metrics_report_coverage():
    m = regression_metrics([0.1, 0.2, 0.3, 0.9], [0.2, 0.4, 0.6, None])
    assert m["n"] == 4 and m["answered"] == 3 and m["coverage"] == pytest.approx(0.75)
    assert m["ccc"] == pytest.approx(4 / 11)
    assert m["pearson"] == pytest.approx(1.0)


def test_au_metrics_by_hand():
    refs = [
        {"AU1": 1, "AU2": 0, "AU4": -1},
        {"AU1": 1, "AU2": 1, "AU4": 0},
        {"AU1": 0, "AU2": 0, "AU4": 0},
        {"AU1": 0, "AU2": -1, "AU4": 0},
    ]
    preds = [["AU1"], ["AU2", "AU4"], ["AU1"], None]
    m = au_metrics(refs, preds)
    au1, au2, au4 = m["per_au"]["AU1"], m["per_au"]["AU2"], m["per_au"]["AU4"]
    # AU1: tp (row 1), fn (row 2), fp (row 3), fp (row 4: an unusable answer is wrong on every coded AU)
    assert (au1["tp"], au1["fp"], au1["fn"], au1["tn"]) == (1, 2, 1, 0)
    assert au1["f1"] == pytest.approx(2 / 5)
    assert au1["precision"] == pytest.approx(1 / 3) and au1["recall"] == pytest.approx(1 / 2)
    # AU2: coded on rows 1-3 only
    assert (au2["n"], au2["tp"], au2["fp"], au2["fn"], au2["tn"]) == (3, 1, 0, 0, 2)
    assert au2["f1"] == 1.0
    # AU4 has no positive reference: no F1, listed with its false positives, left out of the mean
    assert au4["positives"] == 0 and au4["f1"] is None and au4["fp"] == 2
    assert m["averaged_over"] == ["AU1", "AU2"]
    assert m["mean_f1"] == pytest.approx((2 / 5 + 1) / 2)
    assert "AU12" not in m["per_au"]  # never coded
    assert m["n"] == 4 and m["answered"] == 3


def test_au_unanswered_is_a_false_negative_on_positives():
    m = au_metrics([{"AU12": 1}, {"AU12": 1}], [["AU12"], None])
    assert (m["per_au"]["AU12"]["tp"], m["per_au"]["AU12"]["fn"]) == (1, 1)
    assert m["mean_f1"] == pytest.approx(2 / 3)


def test_au_metrics_without_any_positive_have_no_mean():
    m = au_metrics([{"AU12": 0}], [[]])
    assert m["mean_f1"] is None and m["averaged_over"] == []
    assert m["per_au"]["AU12"]["tn"] == 1
