"""Concept drift: the live metric against the version's test metric, by scipy's one-sided tests."""

import numpy as np
import pytest
from scipy import stats

from services.monitoring import concept_drift


def test_a_significant_accuracy_drop_is_concept_drift_by_the_exact_binomial_test():
    drop = concept_drift.classification([True] * 70 + [False] * 30, {"test_accuracy": 0.9, "test_f1": 0.8})
    assert drop["p_value"] == stats.binomtest(70, 100, 0.9, alternative="less").pvalue
    assert (drop["baseline"], drop["current"], drop["actuals"], drop["drifted"]) == (0.9, 0.7, 100, True)
    steady = concept_drift.classification([True] * 88 + [False] * 12, {"test_accuracy": 0.9})
    assert steady["p_value"] == pytest.approx(stats.binomtest(88, 100, 0.9, alternative="less").pvalue, abs=1e-12)
    assert not steady["drifted"]
    # Better than the baseline is never drift; an uploaded version's own "accuracy" is its baseline.
    better = concept_drift.classification([True] * 100, {"accuracy": 0.9})
    assert better["p_value"] == 1.0 and not better["drifted"]


def test_too_few_actuals_give_the_figures_without_a_verdict_and_no_baseline_gives_nothing():
    few = concept_drift.classification([False] * (concept_drift.MIN_ACTUALS - 1), {"test_accuracy": 0.99})
    assert (few["current"], few["p_value"], few["drifted"]) == (0.0, None, False)
    none = concept_drift.classification([], {"test_accuracy": 0.9})
    assert (none["current"], none["actuals"], none["p_value"]) == (None, 0, None)
    assert concept_drift.classification([True] * 50, {"test_f1": 0.9}) is None
    assert concept_drift.regression([1.0] * 50, {"test_r2": 0.5}) is None
    assert concept_drift.classification([True] * 50, {"test_accuracy": float("nan")}) is None


def test_larger_squared_errors_are_concept_drift_by_the_one_sided_t_test():
    rng = np.random.default_rng(4)
    errors = rng.normal(0, 2.0, 200).tolist()  # rmse about 2 against a test rmse of 1.5
    worse = concept_drift.regression(errors, {"test_rmse": 1.5})
    squared = np.square(errors)
    expected = stats.ttest_1samp(squared, 1.5 ** 2, alternative="greater").pvalue
    assert worse["p_value"] == pytest.approx(expected, rel=1e-12, abs=1e-15) and worse["drifted"]
    assert worse["current"] == pytest.approx(np.sqrt(squared.mean()), rel=1e-12)
    same = concept_drift.regression(rng.normal(0, 1.5, 200).tolist(), {"test_rmse": 1.5})
    assert not same["drifted"]
    # Every error alike: no spread for t; the mean alone decides.
    assert concept_drift.regression([3.0] * 40, {"test_rmse": 1.0})["p_value"] == 0.0
    assert concept_drift.regression([0.5] * 40, {"test_rmse": 1.0})["p_value"] == 1.0
