"""What a set of predictions adds up to (Tally): sums that merge by addition, so that a month of a
model's performance is computed from its hours' tallies (rollups.py) rather than its millions of rows.

Each figure the performance and anomaly reads show comes from these sums (scores.py scores them):
counts of predictions and errors; latencies counted in log-spaced bins, GROWTH wide, so that a
percentile is within 1% of numpy's on the same latencies (below LATENCY_FLOOR_MS a latency counts as
0, above LATENCY_CEILING_MS as that ceiling); the predictions that did not fail and have their actual,
as counts of (predicted, actual) label pairs and their positive-class scores in SCORE_BINS bins of
0.001, split by whether the actual is the positive class (roc_auc is exact for scores given to three
decimals, and otherwise that of the scores so rounded; a score outside [0, 1] is no probability and
leaves roc_auc unknown, as a missing one does); a regressor's summed squared and absolute errors and
its actuals' mean and spread, merged as Chan et al. merge variances; a prediction's mean output and
the features' missing values, for the operating metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, NamedTuple

import numpy as np
import orjson

from services.monitoring import scores

LATENCY_FLOOR_MS = 0.01
LATENCY_CEILING_MS = 1e6
GROWTH = 1.02
# Bin 0 holds latencies up to the floor; bin i above it (floor * GROWTH**(i-1), floor * GROWTH**i].
LATENCY_BINS = math.ceil(math.log(LATENCY_CEILING_MS / LATENCY_FLOOR_MS, GROWTH)) + 1
SCORE_BINS = 1001
_LOG_GROWTH = math.log(GROWTH)
# Stored as unsigned 32-bit counts (an hour of one version holds fewer than 4 billion predictions), and
# counted in 64 bits.
_STORED = np.dtype("<u4")


def latency_bin(milliseconds: float) -> int:
    if milliseconds <= LATENCY_FLOOR_MS:
        return 0
    return min(LATENCY_BINS - 1, math.ceil(math.log(milliseconds / LATENCY_FLOOR_MS) / _LOG_GROWTH))


def _latency_of_bins() -> np.ndarray:
    # Each bin's harmonic middle: within (GROWTH - 1) / (GROWTH + 1) < 1% of any latency the bin holds.
    middles = 2 * LATENCY_FLOOR_MS * GROWTH ** np.arange(LATENCY_BINS, dtype=float) / (GROWTH + 1)
    middles[0] = 0.0
    return middles


_LATENCY_OF_BIN = _latency_of_bins()


def _label(value: Any) -> Any:
    # A label is a key of the pairs' counter: an object or a list (a hashable label was meant) by its JSON.
    label = scores.as_label(value)
    return orjson.dumps(label).decode() if isinstance(label, (dict, list)) else label


def _sum(mine: np.ndarray | None, theirs: np.ndarray | None) -> np.ndarray | None:
    if theirs is None:
        return mine
    return theirs.copy() if mine is None else mine + theirs


@dataclass
class Tally:
    predictions: int = 0
    errors: int = 0
    latency_bins: np.ndarray | None = None  # counts per latency bin
    outputs: int = 0  # predictions that are, or carry, a number (mean_prediction)
    output_sum: float = 0.0
    feature_values: int = 0
    missing_values: int = 0
    labeled: int = 0  # predictions that did not fail and have their actual
    label_pairs: Counter = field(default_factory=Counter)  # (predicted, actual) -> count; classification
    # Counts per score bin (columns) of the labeled predictions whose actual is not the positive class
    # (row 0) and of those whose actual is (row 1).
    score_bins: np.ndarray | None = None
    unscored: int = 0  # labeled predictions without a score in [0, 1]
    scored_pairs: int = 0  # regression: labeled predictions whose value and actual are numbers
    squared_error: float = 0.0
    absolute_error: float = 0.0
    actual_mean: float = 0.0
    actual_spread: float = 0.0  # summed squared deviations of those actuals from their mean

    def add(self, other: Tally) -> Tally:
        """This tally with `other`'s predictions counted too (in place)."""
        if other.scored_pairs:
            n, m = self.scored_pairs, other.scored_pairs
            delta = other.actual_mean - self.actual_mean
            self.actual_mean += delta * m / (n + m)
            self.actual_spread += other.actual_spread + delta * delta * n * m / (n + m)
        for name in ("predictions", "errors", "outputs", "output_sum", "feature_values", "missing_values", "labeled",
                     "unscored", "scored_pairs", "squared_error", "absolute_error"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_bins = _sum(self.latency_bins, other.latency_bins)
        self.score_bins = _sum(self.score_bins, other.score_bins)
        self.label_pairs.update(other.label_pairs)
        return self

    def figures(self, seconds: float, model_type: str) -> dict[str, Any]:
        """The performance figures of these predictions over `seconds`, as GET .../performance shows them."""
        count = self.predictions
        figures: dict[str, Any] = {
            "predictions": count, "errors": self.errors, "error_rate": self.errors / count if count else None,
            "throughput": count / seconds,
            **dict(zip(("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"), self.latency_percentiles(50, 95, 99))),
        }
        if model_type == "classification":
            figures["with_actuals"] = self.labeled
            figures.update(scores.classification(self.label_pairs))
            binary = scores.is_binary({label for pair in self.label_pairs for label in pair})
            figures["roc_auc"] = self.roc_auc() if binary and not self.unscored else None
        elif model_type in scores.NUMERIC_TYPES:
            figures["with_actuals"] = self.scored_pairs
            figures.update(scores.regression(self.scored_pairs, self.squared_error, self.absolute_error,
                                             self.actual_spread))
        return figures

    def latency_percentiles(self, *qs: float) -> list[float | None]:
        """numpy.percentile's default (linear between the closest ranks), each rank's latency its bin's."""
        if self.latency_bins is None:
            return [None] * len(qs)
        seen = np.cumsum(self.latency_bins)
        answers = []
        for q in qs:
            position = (int(seen[-1]) - 1) * q / 100
            low = math.floor(position)
            # The bins holding the ranks low and low + 1 (the last rank for the last position).
            low_bin, high_bin = np.searchsorted(seen, [low, min(low + 1, int(seen[-1]) - 1)], side="right")
            low_value, high_value = _LATENCY_OF_BIN[low_bin], _LATENCY_OF_BIN[high_bin]
            answers.append(float(low_value + (high_value - low_value) * (position - low)))
        return answers

    def roc_auc(self) -> float | None:
        """The area under the ROC curve of the binned scores: the Mann-Whitney U statistic, scores sharing
        a bin counted as ties (half). None when a class is missing, where scikit-learn has no answer."""
        if self.score_bins is None:
            return None
        negative, positive = self.score_bins
        n_negative, n_positive = int(negative.sum()), int(positive.sum())
        if not n_positive or not n_negative:
            return None
        below = np.cumsum(negative) - negative  # negatives in the lower bins
        # In 64-bit integers: exact up to billions of predictions.
        return int(positive @ (2 * below + negative)) / (2 * n_positive * n_negative)

    def mean_prediction(self) -> float | None:
        return self.output_sum / self.outputs if self.outputs and math.isfinite(self.output_sum) else None

    def missing_rate(self) -> float | None:
        return self.missing_values / self.feature_values if self.feature_values else None

    def columns(self) -> dict[str, Any]:
        """The tally as tables.PerformanceHour's columns."""
        row = {item.name: getattr(self, item.name) for item in fields(self)}
        for name in ("latency_bins", "score_bins"):
            row[name] = None if row[name] is None else row[name].astype(_STORED).tobytes()
        row["label_pairs"] = [[p, a, n] for (p, a), n in self.label_pairs.items()] or None
        return row

    @classmethod
    def from_columns(cls, row: Any) -> Tally:
        values = {item.name: getattr(row, item.name) for item in fields(cls)}
        for name, shape in (("latency_bins", (LATENCY_BINS,)), ("score_bins", (2, SCORE_BINS))):
            if values[name] is not None:
                values[name] = np.frombuffer(values[name], dtype=_STORED).astype(np.int64).reshape(shape)
        values["label_pairs"] = Counter({(p, a): n for p, a, n in values["label_pairs"] or ()})
        return cls(**values)


class Row(NamedTuple):
    """A prediction as tally reads it: the stored row's values, and its actual (None while it has none)."""

    prediction: Any
    probabilities: Any
    latency_ms: float | None
    error: str | None
    features: Any
    actual: Any


def tally(rows: Iterable[Row], model_type: str | None) -> Tally:
    """The tally of prediction rows."""
    result = Tally()
    latencies: list[int] = []  # each latency's bin
    scored: list[int] = []  # each score's bin, counting the positives' from SCORE_BINS
    outputs: list[float] = []
    squared, absolute, actuals = [], [], []
    for row in rows:
        result.predictions += 1
        if row.latency_ms is not None:
            latencies.append(latency_bin(row.latency_ms))
        if isinstance(row.features, dict):
            result.feature_values += len(row.features)
            result.missing_values += list(row.features.values()).count(None)
        if row.error is not None:
            result.errors += 1
            continue
        label, score = scores.label_and_score(scores.value_of(row.prediction, "prediction"), row.probabilities)
        output = scores.number(score if score is not None else label)
        if output is not None:
            outputs.append(output)
        if row.actual is None:
            continue
        result.labeled += 1
        actual = scores.value_of(row.actual, "actual")
        if model_type == "classification":
            actual = _label(actual)
            result.label_pairs[_label(label), actual] += 1
            score = scores.number(score)
            if score is None or not 0 <= score <= 1:
                result.unscored += 1
            else:
                scored.append((SCORE_BINS if actual == 1 else 0) + round(score * (SCORE_BINS - 1)))
        elif model_type in scores.NUMERIC_TYPES:
            predicted, actual = scores.number(scores.value_of(row.prediction, "prediction")), scores.number(actual)
            if predicted is not None and actual is not None:
                error = actual - predicted
                squared.append(error * error)
                absolute.append(abs(error))
                actuals.append(actual)
    if latencies:
        result.latency_bins = np.bincount(latencies, minlength=LATENCY_BINS).astype(np.int64)
    if scored:
        result.score_bins = np.bincount(scored, minlength=2 * SCORE_BINS).astype(np.int64).reshape(2, SCORE_BINS)
    result.outputs = len(outputs)
    result.output_sum = _fsum(outputs)
    if actuals:
        # fsum: exactly rounded sums, so that a constant target's spread is exactly 0, as numpy finds it.
        result.scored_pairs = len(actuals)
        result.squared_error, result.absolute_error = _fsum(squared), _fsum(absolute)
        result.actual_mean = math.fsum(actuals) / len(actuals)
        result.actual_spread = math.fsum((value - result.actual_mean) ** 2 for value in actuals)
    return result


def _fsum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:  # numbers too large to sum: no mean to show
        return math.inf
