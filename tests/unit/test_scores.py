"""Monitoring's scores against scikit-learn's and numpy's on the same input, edge cases included: each
computed from tallies (tally.py) of the predictions split in parts and merged, as hours are."""

from __future__ import annotations

import random
import numpy as np
import pytest
from sklearn import metrics

from services.monitoring import scores
from services.monitoring.tally import Columns, Tally, tally

TOLERANCE = 1e-12


def _draws(seed: int, method: str, count: int, *args) -> list:
    rng = random.Random(seed)
    return [getattr(rng, method)(*args) for _ in range(count)]


def _row(prediction=None, actual=None, score=None, latency=None) -> dict:
    return {"prediction": prediction, "probabilities": None if score is None else {"1": score}, "latency": latency,
            "actual": actual}


def _tally(rows: list[dict], model_type: str | None) -> Tally:
    return tally(Columns(len(rows), 0, [row["latency"] for row in rows if row["latency"] is not None], [],
                         *([row[name] for row in rows] for name in ("prediction", "probabilities", "actual"))),
                 model_type)


def _figures(rows: list, model_type: str | None, parts: int = 3) -> dict:
    """The figures of `rows` tallied in `parts` parts of uneven size, merged."""
    cuts = sorted({0, len(rows), *(len(rows) * k // (parts + k) for k in range(1, parts))})
    merged = Tally()
    for start, end in zip(cuts, cuts[1:]):
        merged.add(_tally(rows[start:end], model_type))
    return merged.figures(1.0, model_type or "")


def _classified(predicted, actual, scores_=None) -> dict:
    return _figures([_row(p, a, s) for p, a, s in zip(predicted, actual, scores_ or [None] * len(actual))],
                    "classification")


def _sklearn_classification(predicted, actual):
    labels = set(predicted) | set(actual)
    average = "binary" if labels <= {0, 1} else "macro"
    return {
        "accuracy": metrics.accuracy_score(actual, predicted),
        "precision": metrics.precision_score(actual, predicted, average=average, zero_division=0),
        "recall": metrics.recall_score(actual, predicted, average=average, zero_division=0),
        "f1": metrics.f1_score(actual, predicted, average=average, zero_division=0),
    }


CLASSIFICATION_CASES = {
    "binary": ([1, 0, 1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 1, 1, 1]),
    "binary, never predicting the positive class": ([0, 0, 0, 0], [1, 0, 1, 0]),
    "binary, every answer right": ([1, 0, 1], [1, 0, 1]),
    "binary, only negatives": ([0, 0], [0, 0]),
    "three classes": ([0, 1, 2, 2, 1, 0, 2, 1, 1], [0, 2, 2, 2, 1, 0, 1, 1, 0]),
    "strings, one never predicted": (["cat", "dog", "dog", "cat"], ["cat", "dog", "bird", "cat"]),
    "random, four classes": (_draws(1, 'randrange', 500, 4),
                             _draws(2, 'randrange', 500, 4)),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION_CASES))
def test_classification_scores_are_scikit_learns(case):
    predicted, actual = CLASSIFICATION_CASES[case]
    ours = _classified(predicted, actual)
    for name, expected in _sklearn_classification(predicted, actual).items():
        assert ours[name] == pytest.approx(expected, abs=TOLERANCE), name


def test_float_labels_of_whole_numbers_are_the_same_labels():
    assert _classified([1.0, 0.0], [1, 0])["accuracy"] == 1.0


@pytest.mark.parametrize("actual, scores_", [
    ([1, 0, 1, 0, 1, 1, 0], [0.9, 0.1, 0.8, 0.4, 0.35, 0.6, 0.7]),
    ([1, 0, 1, 0, 1, 0], [0.5, 0.5, 0.5, 0.2, 0.8, 0.8]),  # ties
    ([0, 1] * 200, [round(score, 3) for score in _draws(3, 'random', 400)]),
    ([True, False, True, False], [0.0, 0.001, 1.0, 0.999]),
])
def test_roc_auc_is_scikit_learns_for_scores_given_to_three_decimals(actual, scores_):
    ours = _classified(actual, actual, scores_)["roc_auc"]
    assert ours == pytest.approx(metrics.roc_auc_score(actual, scores_), abs=TOLERANCE)


def test_roc_auc_of_finer_scores_is_that_of_the_scores_rounded_to_three_decimals():
    actual, scores_ = [0, 1] * 500, _draws(7, 'random', 1000)
    ours = _classified(actual, actual, scores_)["roc_auc"]
    assert ours == pytest.approx(metrics.roc_auc_score(actual, [round(s, 3) for s in scores_]), abs=TOLERANCE)
    assert ours == pytest.approx(metrics.roc_auc_score(actual, scores_), abs=1e-3)


def test_roc_auc_has_no_answer_for_one_class_a_missing_score_or_one_outside_0_to_1():
    assert _classified([1, 1], [1, 1], [0.2, 0.9])["roc_auc"] is None
    assert _figures([_row(1, 1, 0.2), _row(0, 0)], "classification")["roc_auc"] is None
    assert _classified([1, 0], [1, 0], [1.5, 0.2])["roc_auc"] is None
    assert _classified(["a", "b"], ["a", "b"], [0.9, 0.1])["roc_auc"] is None  # not binary


@pytest.mark.parametrize("predicted, actual", [
    ([2.5, 0.0, 2.0, 8.0], [3.0, -0.5, 2.0, 7.0]),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
    ([5.0, 5.0], [5.0, 5.0]),  # constant target, perfect
    ([4.0, 6.0], [5.0, 5.0]),  # constant target, not perfect
    (_draws(4, 'gauss', 300, 0, 1), [-1.1788417512306717] * 300),  # a constant whose plain sum does not round back
    (_draws(4, 'gauss', 300, 0, 1), _draws(5, 'gauss', 300, 0, 1)),
])
def test_regression_scores_are_scikit_learns(predicted, actual):
    ours = _figures([_row(p, a) for p, a in zip(predicted, actual)], "regression")
    assert ours["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(actual, predicted)), abs=TOLERANCE)
    assert ours["mae"] == pytest.approx(metrics.mean_absolute_error(actual, predicted), abs=TOLERANCE)
    assert ours["r2"] == pytest.approx(metrics.r2_score(actual, predicted), abs=TOLERANCE)


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0, 10.0, 7.5],
                                    _draws(6, 'expovariate', 1001, 1)])
@pytest.mark.parametrize("q", [50, 95, 99])
def test_percentiles_are_numpys(values, q):
    assert scores.percentile(values, q) == pytest.approx(np.percentile(values, q), abs=TOLERANCE)


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0, 10.0, 7.5], [0.0, 0.004, 250.0],
                                    _draws(6, 'expovariate', 1001, 0.01), _draws(8, 'lognormvariate', 5000, 3, 2)])
@pytest.mark.parametrize("q", [50, 95, 99])
def test_tallied_latency_percentiles_are_within_1_percent_of_numpys(values, q):
    ours = _figures([_row(latency=value) for value in values], None)[f"latency_p{q}_ms"]
    # Within 1%, or 0.01 ms for latencies under it (counted as 0).
    assert ours == pytest.approx(np.percentile(values, q), rel=0.01, abs=0.01)


def test_a_prediction_counts_as_its_value_and_one_between_0_and_1_scores_itself_without_probabilities():
    found = tally(Columns(predictions=4, errors=1, latencies=[1.0, 2.0], features=[{"a": None, "b": 1}, {"a": 2}],
                          predicted=[{"prediction": 0.8, "confidence": 1}, 0.3, 1],
                          probabilities=[None, {"1": 0.9}, None], actuals=[1, {"actual": 0}, None]), "classification")
    assert (found.feature_values, found.missing_values, found.labeled, found.unscored) == (3, 1, 2, 0)
    assert found.label_pairs == {(1, 1): 1, (0, 0): 1}
    assert found.mean_prediction() == pytest.approx((0.8 + 0.9 + 1) / 3)
    assert found.roc_auc() == 0.0  # the positive's 0.8 below the negative's 0.9


def test_no_values_no_scores():
    assert scores.percentile([], 50) is None
    assert {name: value for name, value in Tally().figures(1.0, "classification").items()
            if name not in ("predictions", "errors", "throughput", "with_actuals")} == dict.fromkeys(
        ("error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "accuracy", "precision", "recall", "f1",
         "roc_auc"))
    assert set(Tally().figures(1.0, "regression").values()) - {0, 0.0} == {None}
