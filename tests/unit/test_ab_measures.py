"""Each A/B metric's arms (services/monitoring/ab_measures.py) from the sums the database adds up, against
scikit-learn's scores and the delta method computed on each prediction's values, as GrowthBook states it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn import metrics

from services.monitoring.ab_arms import ArmSums
from services.monitoring.ab_measures import MEAN, RATE, RATIO, measure
from shared.ab_statistics import MeanArm, RateArm

TOLERANCE = 1e-9


def _labelled(y_true, y_pred) -> ArmSums:
    return ArmSums(label_pairs=Counter(zip(np.asarray(y_pred).tolist(), np.asarray(y_true).tolist())))


def _binary(seed: int, n: int, accuracy: float):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, 1 - y_true)
    return y_true, y_pred


def _ratio_variance(x: np.ndarray, y: np.ndarray) -> float:
    """Var of sum(x) / sum(y) times n, by the delta method (GrowthBook's ratio metrics, Deng et al. 2018):
    (var_x - 2 R cov_xy + R^2 var_y) / mean_y^2, each moment with ddof 1."""
    ratio = x.sum() / y.sum()
    covariance = np.cov(x, y, ddof=1)
    return (covariance[0, 0] - 2 * ratio * covariance[0, 1] + ratio ** 2 * covariance[1, 1]) / y.mean() ** 2


def test_binary_accuracy_precision_and_recall_are_rates_over_their_own_predictions():
    y_true, y_pred = _binary(1, 3000, 0.8)
    arm = _labelled(y_true, y_pred)
    true_positive = int(((y_pred == 1) & (y_true == 1)).sum())
    expected = {"accuracy": RateArm(3000, int((y_true == y_pred).sum())),
                "precision": RateArm(int((y_pred == 1).sum()), true_positive),
                "recall": RateArm(int((y_true == 1).sum()), true_positive)}
    for name, rate in expected.items():
        measured = measure(name, arm, arm, {})
        assert measured.method == RATE and measured.a == rate and measured.b == rate, name
    assert expected["precision"].mean == pytest.approx(metrics.precision_score(y_true, y_pred), abs=TOLERANCE)
    assert expected["recall"].mean == pytest.approx(metrics.recall_score(y_true, y_pred), abs=TOLERANCE)


def test_binary_f1_is_a_ratio_with_the_delta_methods_variance():
    y_true, y_pred = _binary(2, 2000, 0.7)
    measured = measure("f1", _labelled(y_true, y_pred), _labelled(y_true, y_pred), {})
    assert measured.method == RATIO
    true_positive = ((y_pred == 1) & (y_true == 1)).astype(float)
    x, y = 2 * true_positive, 2 * true_positive + ((y_pred == 1) & (y_true == 0)) + ((y_pred == 0) & (y_true == 1))
    assert measured.a.n == 2000
    assert measured.a.mean == pytest.approx(metrics.f1_score(y_true, y_pred), abs=TOLERANCE)
    assert measured.a.variance == pytest.approx(_ratio_variance(x, y), rel=1e-9)


def test_the_f1_delta_method_matches_the_spread_of_resampled_f1_scores():
    # The normal approximation the test relies on: its standard error within a few percent of the bootstrap's.
    y_true, y_pred = _binary(3, 4000, 0.75)
    arm = measure("f1", _labelled(y_true, y_pred), _labelled(y_true, y_pred), {}).a
    rng = np.random.default_rng(4)
    scores = [metrics.f1_score(y_true[draw], y_pred[draw]) for draw in rng.integers(0, 4000, size=(400, 4000))]
    assert np.sqrt(arm.variance / arm.n) == pytest.approx(np.std(scores, ddof=1), rel=0.1)


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
def test_multiclass_scores_are_macro_averages_with_each_predictions_influence_as_their_variance(name):
    rng = np.random.default_rng(5)
    y_true = rng.choice(["cat", "dog", "owl"], 1500, p=[0.5, 0.3, 0.2])
    y_pred = np.where(rng.random(1500) < 0.7, y_true, rng.choice(["cat", "dog", "owl"], 1500))
    arm = measure(name, _labelled(y_true, y_pred), _labelled(y_true, y_pred), {}).a
    score = {"precision": metrics.precision_score, "recall": metrics.recall_score, "f1": metrics.f1_score}[name]
    assert arm.mean == pytest.approx(score(y_true, y_pred, average="macro"), abs=TOLERANCE)
    # Each (predicted, actual) cell's influence n * d score / d count, by finite differences: adding a little
    # weight to one cell and scoring again, as scikit-learn's sample_weight allows.
    cells = sorted(Counter(zip(y_pred.tolist(), y_true.tolist())).items())
    base = score(y_true, y_pred, average="macro")
    influence = {}
    step = 1e-4
    for (predicted, actual), _ in cells:
        weights = np.ones(1501)
        weights[-1] = step
        moved = score(np.append(y_true, actual), np.append(y_pred, predicted), average="macro", sample_weight=weights)
        influence[predicted, actual] = 1500 * (moved - base) / step
    expected = sum(count * influence[cell] ** 2 for cell, count in cells) / 1499
    assert arm.variance == pytest.approx(expected, rel=1e-3)


def test_regression_errors_become_mae_as_a_mean_and_rmse_by_the_delta_method():
    rng = np.random.default_rng(6)
    errors = rng.normal(0.3, 2.0, 5000)
    sums = ArmSums(scored=5000, absolute_error=float(np.abs(errors).sum()),
                   squared_error=float((errors ** 2).sum()), squared_error_sq=float((errors ** 4).sum()))
    mae = measure("mae", sums, sums, {})
    assert mae.method == MEAN
    expected = MeanArm.from_values(np.abs(errors))
    assert mae.a.n == expected.n and mae.a.mean == pytest.approx(expected.mean) \
        and mae.a.variance == pytest.approx(expected.variance, rel=1e-9)
    rmse = measure("rmse", sums, sums, {})
    mse = float(np.mean(errors ** 2))
    assert rmse.method == RATIO
    assert rmse.a.mean == pytest.approx(np.sqrt(metrics.mean_squared_error(errors, np.zeros(5000))), rel=1e-12)
    assert rmse.a.variance == pytest.approx(np.var(errors ** 2, ddof=1) / (4 * mse), rel=1e-9)


def test_operating_and_recorded_metrics_come_from_their_sums():
    latencies = np.array([12.0, 15.5, 9.0, 30.25])
    a = ArmSums(predictions=10, errors=2, latencies=4, latency_sum=float(latencies.sum()),
                latency_sum_sq=float((latencies ** 2).sum()))
    latency = measure("latency", a, ArmSums(), {})
    assert (latency.a.n, latency.a.mean) == (4, pytest.approx(latencies.mean()))
    assert latency.a.variance == pytest.approx(latencies.var(ddof=1))
    assert latency.b.n == 0
    assert measure("error_rate", a, a, {}).a == RateArm(10, 2)
    recorded = {("business_impact", "A"): (3, 6.0, 14.0), ("business_impact", "B"): (2, 5.0, 13.0)}
    impact = measure("business_impact", a, a, recorded)
    assert (impact.a.mean, impact.b.mean) == (2.0, 2.5)
    assert impact.a.variance == pytest.approx(np.var([1.0, 2.0, 3.0], ddof=1))
    assert measure("never_recorded", a, a, recorded).a.n == 0


def test_no_predictions_make_empty_arms_not_errors():
    empty = ArmSums()
    for name in ("accuracy", "precision", "recall", "f1", "rmse", "mae", "latency", "error_rate", "custom"):
        measured = measure(name, empty, empty, {})
        assert measured.a.n == 0 and measured.b.n == 0, name


def test_sums_rounded_below_what_a_constant_sample_has_make_no_variance_not_an_error():
    # A constant's squares summed in another order than its values may fall a hair short of total^2 / n.
    total = 0.1 * 20_000
    short = total * total / 20_000 * (1 - 1e-11)
    with pytest.raises(ValueError):
        MeanArm.from_sums(20_000, total, short)
    arm = measure("latency", ArmSums(latencies=20_000, latency_sum=total, latency_sum_sq=short), ArmSums(), {}).a
    assert arm.n == 20_000 and arm.mean == pytest.approx(0.1) and arm.variance == 0.0
