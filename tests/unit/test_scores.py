"""Monitoring's scores against scikit-learn's and numpy's on the same input, edge cases included."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn import metrics

from services.monitoring import scores

TOLERANCE = 1e-12


def _draws(seed: int, method: str, count: int, *args) -> list:
    rng = random.Random(seed)
    return [getattr(rng, method)(*args) for _ in range(count)]


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
    ours = scores.classification(predicted, actual, [None] * len(actual))
    for name, expected in _sklearn_classification(predicted, actual).items():
        assert ours[name] == pytest.approx(expected, abs=TOLERANCE), name


def test_float_labels_of_whole_numbers_are_the_same_labels():
    assert scores.classification([1.0, 0.0], [1, 0], [None, None])["accuracy"] == 1.0


@pytest.mark.parametrize("actual, scores_", [
    ([1, 0, 1, 0, 1, 1, 0], [0.9, 0.1, 0.8, 0.4, 0.35, 0.6, 0.7]),
    ([1, 0, 1, 0, 1, 0], [0.5, 0.5, 0.5, 0.2, 0.8, 0.8]),  # ties
    ([0, 1] * 200, _draws(3, 'random', 400)),
])
def test_roc_auc_is_scikit_learns(actual, scores_):
    assert scores.roc_auc([a == 1 for a in actual], scores_) == pytest.approx(
        metrics.roc_auc_score(actual, scores_), abs=TOLERANCE)


def test_roc_auc_has_no_answer_for_one_class_or_a_missing_score():
    assert scores.roc_auc([True, True], [0.2, 0.9]) is None
    assert scores.roc_auc([True, False], [0.2, None]) is None


@pytest.mark.parametrize("predicted, actual", [
    ([2.5, 0.0, 2.0, 8.0], [3.0, -0.5, 2.0, 7.0]),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
    ([5.0, 5.0], [5.0, 5.0]),  # constant target, perfect
    ([4.0, 6.0], [5.0, 5.0]),  # constant target, not perfect
    (_draws(4, 'gauss', 300, 0, 1), [-1.1788417512306717] * 300),  # a constant whose plain sum does not round back
    (_draws(4, 'gauss', 300, 0, 1), _draws(5, 'gauss', 300, 0, 1)),
])
def test_regression_scores_are_scikit_learns(predicted, actual):
    ours = scores.regression(predicted, actual)
    assert ours["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(actual, predicted)), abs=TOLERANCE)
    assert ours["mae"] == pytest.approx(metrics.mean_absolute_error(actual, predicted), abs=TOLERANCE)
    assert ours["r2"] == pytest.approx(metrics.r2_score(actual, predicted), abs=TOLERANCE)


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0, 10.0, 7.5],
                                    _draws(6, 'expovariate', 1001, 1)])
@pytest.mark.parametrize("q", [50, 95, 99])
def test_percentiles_are_numpys(values, q):
    assert scores.percentile(values, q) == pytest.approx(np.percentile(values, q), abs=TOLERANCE)


def test_no_values_no_scores():
    assert scores.percentile([], 50) is None
    assert set(scores.classification([], [], []).values()) == {None}
    assert set(scores.regression([], []).values()) == {None}
