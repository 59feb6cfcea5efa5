"""Concept drift: the model scores worse on live data, by its actuals, than on its test split.

The baseline is the version's own metric as the registry holds it (a trained version's `test_<name>`,
an uploaded one's `<name>`), taken as known. Classification: the live accuracy against the baseline
accuracy by the exact one-sided binomial test (scipy.stats.binomtest, alternative "less") on the
count of correct predictions. Regression: the live squared errors against the baseline's squared
rmse by the one-sided one-sample t-test (scipy.stats.ttest_1samp, alternative "greater"): is the mean
squared error larger than the baseline's? Concept drift is a significant drop (p < ALPHA) once at
least MIN_ACTUALS predictions have their actual; fewer give the figures and no verdict.
"""

from __future__ import annotations

import math
from typing import Any

ALPHA = 0.05
MIN_ACTUALS = 30


def baseline_metric(metrics: dict[str, Any] | None, name: str) -> float | None:
    value = (metrics or {}).get(f"test_{name}", (metrics or {}).get(name))
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def classification(correct: list[bool], metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Live accuracy against the version's; None without a baseline accuracy."""
    from scipy import stats

    baseline = baseline_metric(metrics, "accuracy")
    if baseline is None:
        return None
    hits, n = sum(correct), len(correct)
    result = {"metric": "accuracy", "baseline": baseline, "current": hits / n if n else None, "actuals": n,
              "test": "binomial", "p_value": None, "drifted": False}
    if n >= MIN_ACTUALS:
        result["p_value"] = float(stats.binomtest(hits, n, baseline, alternative="less").pvalue)
        result["drifted"] = result["p_value"] < ALPHA
    return result


def regression(errors: list[float], metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Live rmse against the version's, tested on the squared errors; None without a baseline rmse."""
    from scipy import stats

    baseline = baseline_metric(metrics, "rmse")
    if baseline is None:
        return None
    # An error too large to square in floating point says nothing a test can use: left out.
    squared = [error * error for error in errors if math.isfinite(error * error)]
    n = len(squared)
    result = {"metric": "rmse", "baseline": baseline, "current": math.sqrt(math.fsum(squared) / n) if n else None,
              "actuals": n, "test": "t", "p_value": None, "drifted": False}
    if n >= MIN_ACTUALS:
        # Squared errors all equal (a constant miss) have no spread: the t statistic is undefined, and
        # the mean alone says whether they exceed the baseline.
        if len(set(squared)) == 1:
            result["p_value"] = 0.0 if squared[0] > baseline ** 2 else 1.0
        else:
            result["p_value"] = float(stats.ttest_1samp(squared, baseline ** 2, alternative="greater").pvalue)
        result["drifted"] = result["p_value"] < ALPHA
    return result
