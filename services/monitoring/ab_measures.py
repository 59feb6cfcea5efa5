"""Each metric of an A/B test as shared.ab_statistics tests it: both arms from their sums (ab_arms.py).

- accuracy: a rate over the predictions that did not fail and have their actual (`RateArm`: the pooled
  two-proportion z-test).
- precision, recall: for binary labels (0/1 or false/true over both arms: scores.is_binary; 1 positive), rates
  over the predictions of 1 (precision) and the actuals of 1 (recall). For other labels the macro average over
  each arm's labels, as scores.classification (and the performance page) computes it, tested as a ratio below.
- f1 (binary: 2TP / (2TP + FP + FN); otherwise the macro average): a ratio metric, tested as GrowthBook tests
  ratio metrics: each prediction's linearisation by the delta method, psi = (x - R y) / mean(y) for
  R = sum(x) / sum(y) (x = 2 [true positive], y = 2 [TP] + [FP] + [FN] for f1), is a mean whose variance is the
  ratio's (Var(R) ~ Var(psi) / n), so that `MeanArm(n, R, Var(psi))` goes through Welch's test with it. A macro
  average sums its labels' psi / K. Every psi is a function of the prediction's (predicted, actual) cell, so the
  label pairs' counts carry it exactly.
- mae: the mean of |error| (`MeanArm.from_sums` over |e| and e^2). rmse: sqrt(MSE), its variance by the delta
  method, Var(e^2) / (4 MSE): a test of the MSE linearised, with every figure (estimates, difference,
  intervals, a guardrail's margin) in the rmse's own units; Var(e^2) comes from the sums of e^2 and e^4.
- latency: the mean of latency_ms over the predictions that have one. error_rate: errors over predictions.
- a custom metric: the mean of the values recorded for the test's arm (POST /api/v1/monitoring/metrics with
  ab_test_id and arm "A" or "B").

The tests use predictions as the unit of analysis, units (unit_id) only for the sample ratio check: a unit's
predictions are taken as independent, as GrowthBook does for a metric without a per-user aggregate; where a
unit makes many predictions of one outcome the variance is understated.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from services.monitoring.ab_arms import ArmSums
from services.monitoring.scores import is_binary
from shared.ab_statistics import MeanArm, RateArm

RATE, MEAN, RATIO = "rate", "mean", "ratio"
# How each kind of figure is tested, as the results say.
METHODS = {RATE: "two-proportion z-test", MEAN: "Welch's t-test",
           RATIO: "Welch's t-test on the delta method's linearisation"}
QUALITY = ("accuracy", "precision", "recall", "f1", "rmse", "mae")
OPERATING = ("latency", "error_rate")
# Built-in metrics whose lower values are better (as the deployment service defines them); a custom metric's
# higher values are better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "latency", "error_rate"})
# Built-in metrics whose figures are shares: the test's mixing_variance (tau^2, in a share's squared units) suits
# them as it is; the others are in units of their own (ab_analysis.py).
SHARES = frozenset({"accuracy", "precision", "recall", "f1", "error_rate"})


@dataclass(frozen=True)
class Measured:
    """A metric's two arms as ab_statistics takes them, and how they are tested."""

    a: RateArm | MeanArm
    b: RateArm | MeanArm
    method: str


def measure(name: str, a: ArmSums, b: ArmSums, recorded: dict[tuple[str, str], tuple]) -> Measured:
    """The metric `name`'s arms; `recorded` holds the custom metrics' (count, sum, sum of squares) by (name, arm)."""
    if name in ("accuracy", "precision", "recall", "f1"):
        binary = is_binary({label for arm in (a, b) for pair in arm.label_pairs for label in pair})
        return _classification(name, a.label_pairs, b.label_pairs, binary)
    if name == "mae":
        return Measured(*(_from_sums(arm.scored, arm.absolute_error, arm.squared_error) for arm in (a, b)),
                        MEAN)
    if name == "rmse":
        return Measured(_rmse(a), _rmse(b), RATIO)
    if name == "latency":
        return Measured(*(_from_sums(arm.latencies, arm.latency_sum, arm.latency_sum_sq) for arm in (a, b)),
                        MEAN)
    if name == "error_rate":
        return Measured(RateArm(a.predictions, a.errors), RateArm(b.predictions, b.errors), RATE)
    return Measured(*(_from_sums(*recorded.get((name, arm), (0, 0.0, 0.0))) for arm in ("A", "B")), MEAN)


def _from_sums(n: int, total: float, squares: float) -> MeanArm:
    """MeanArm.from_sums of sums the database added in its own order (and the hours' in another): their rounding
    may leave a constant's squares a hair below total^2 / n, which no sample has, and from_sums refuses."""
    return MeanArm.from_sums(n, total, max(squares, total * total / n) if n else squares)


def _classification(name: str, pairs_a: Counter, pairs_b: Counter, binary: bool) -> Measured:
    if name == "accuracy":
        return Measured(_accuracy(pairs_a), _accuracy(pairs_b), RATE)
    if binary and name in ("precision", "recall"):
        side = 0 if name == "precision" else 1  # predicted 1, or actually 1
        return Measured(*(RateArm(sum(n for pair, n in pairs.items() if pair[side] == 1), pairs.get((1, 1), 0))
                          for pairs in (pairs_a, pairs_b)), RATE)
    return Measured(*(_macro(pairs, [1] if binary else _labels(pairs), _RATIOS[name]) for pairs in (pairs_a, pairs_b)),
                    RATIO)


def _accuracy(pairs: Counter) -> RateArm:
    return RateArm(sum(pairs.values()), sum(n for (predicted, actual), n in pairs.items() if predicted == actual))


def _labels(pairs: Counter) -> list[Any]:
    return list({label for pair in pairs for label in pair})


# Per label k, a (predicted, actual) cell's numerator x and denominator y of the label's ratio.
_RATIOS: dict[str, Callable[[Any, Any, Any], tuple[float, float]]] = {
    "precision": lambda p, a, k: (float(p == k and a == k), float(p == k)),
    "recall": lambda p, a, k: (float(p == k and a == k), float(a == k)),
    "f1": lambda p, a, k: (2.0 * (p == k and a == k), float(p == k) + float(a == k)),
}


def _macro(pairs: Counter, labels: list[Any], ratio: Callable[[Any, Any, Any], tuple[float, float]]) -> MeanArm:
    """The mean over `labels` of each label's ratio sum(x) / sum(y) (0 where sum(y) is 0, as scikit-learn's
    zero_division=0), with the variance of each prediction's delta-method linearisation (the module's doc)."""
    n = sum(pairs.values())
    if not n or not labels:
        return MeanArm(n, 0.0, 0.0)
    cells = list(pairs.items())
    estimate, influence = 0.0, [0.0] * len(cells)
    for label in labels:
        terms = [ratio(predicted, actual, label) for (predicted, actual), _ in cells]
        numerator = sum(count * x for (_, count), (x, _) in zip(cells, terms))
        denominator = sum(count * y for (_, count), (_, y) in zip(cells, terms))
        if not denominator:
            continue  # the label's ratio is 0 whatever the cells: it contributes nothing that varies
        value = numerator / denominator
        estimate += value / len(labels)
        for index, (x, y) in enumerate(terms):
            influence[index] += (x - value * y) * n / denominator / len(labels)
    # The linearisations average 0 (each label's sum(x - R y) is 0), so their variance is the mean square.
    squares = sum(count * psi * psi for (_, count), psi in zip(cells, influence))
    return MeanArm(n, estimate, squares / (n - 1) if n > 1 else 0.0)


def _rmse(arm: ArmSums) -> MeanArm:
    """sqrt(MSE) with the delta method's variance Var(e^2) / (4 MSE): e^2's mean and variance from its sums."""
    squared = _from_sums(arm.scored, arm.squared_error, arm.squared_error_sq)
    if squared.mean <= 0:
        return MeanArm(squared.n, 0.0, 0.0)
    return MeanArm(squared.n, math.sqrt(squared.mean), squared.variance / (4 * squared.mean))
