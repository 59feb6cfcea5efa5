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
from itertools import chain, compress
from operator import countOf
from typing import Any, NamedTuple

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


def _latency_of_bins() -> np.ndarray:
    # Each bin's harmonic middle: within (GROWTH - 1) / (GROWTH + 1) < 1% of any latency the bin holds.
    middles = 2 * LATENCY_FLOOR_MS * GROWTH ** np.arange(LATENCY_BINS, dtype=float) / (GROWTH + 1)
    middles[0] = 0.0
    return middles


_LATENCY_OF_BIN = _latency_of_bins()


# The types of value that are their own label (label_key).
_OWN_LABELS = {int, str, bool, type(None)}


def label_key(label: Any) -> Any:
    """A label (scores.as_label's) as a key of a pairs' counter: an object or a list (a hashable label was
    meant) by its JSON."""
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


class Columns(NamedTuple):
    """Predictions as tally reads them, column by column: how many, how many failed, the latencies they
    have (ms), the features objects they have, and of those that did not fail, in one order, each one's
    prediction, probabilities and actual (None while it has none)."""

    predictions: int
    errors: int
    latencies: list[float]
    features: list[dict]
    predicted: list[Any]
    probabilities: list[Any]
    actuals: list[Any]


def tally(columns: Columns, model_type: str | None) -> Tally:
    """The tally of predictions, column by column (numpy for their numbers): one at a time, an hour's
    14,000 predictions took ~55 ms (a Row each, its value's functions each); so, ~10 ms."""
    result = Tally(predictions=columns.predictions, errors=columns.errors,
                   feature_values=sum(map(len, columns.features)),
                   missing_values=countOf(chain.from_iterable(map(dict.values, columns.features)), None))
    if columns.latencies:
        result.latency_bins = np.bincount(_latency_bins(np.array(columns.latencies, dtype=float)),
                                          minlength=LATENCY_BINS)
    predicted = [scores.value_of(value, "prediction") for value in columns.predicted]
    values = scores.numbers(predicted)
    given = [scores.positive_score(value) for value in columns.probabilities]
    given_values = scores.numbers(given)
    not_given = np.array([score is None for score in given], dtype=bool)
    # A prediction's output is its score, else (none given) its label: the prediction itself, or the
    # prediction strictly between 0 and 1 that is a binary model's probability of 1 (scores.label_of).
    outputs = np.where(not_given, values, given_values)
    outputs = outputs[~np.isnan(outputs)]
    result.outputs, result.output_sum = len(outputs), _fsum(outputs.tolist())
    labeled = np.array([actual is not None for actual in columns.actuals], dtype=bool)
    result.labeled = int(labeled.sum())
    actuals = [scores.value_of(actual, "actual") for actual in compress(columns.actuals, labeled)]
    if not actuals:
        return result
    if model_type == "classification":
        # Such a probability (an int cannot be strictly between 0 and 1) is its own score when none was given.
        score = np.where(not_given, np.where((values > 0) & (values < 1), values, np.nan), given_values)
        _add_labels(result, list(compress(predicted, labeled)), actuals, score[labeled])
    elif model_type in scores.NUMERIC_TYPES:
        _add_errors(result, values[labeled], scores.numbers(actuals))
    return result


def _add_labels(result: Tally, predicted: list[Any], actuals: list[Any], score: np.ndarray) -> None:
    """A classifier's labeled predictions counted: their label pairs, and their scores (NaN for none) by
    whether the actual is the positive class."""
    actuals = _labels(actuals)
    result.label_pairs = Counter(zip(_labels([scores.label_of(value) for value in predicted]), actuals))
    in_range = (score >= 0) & (score <= 1)
    result.unscored = len(score) - int(in_range.sum())
    if in_range.any():
        positive = np.array([actual == 1 for actual in actuals], dtype=bool)
        bins = np.rint(score[in_range] * (SCORE_BINS - 1)).astype(np.int64) + SCORE_BINS * positive[in_range]
        result.score_bins = np.bincount(bins, minlength=2 * SCORE_BINS).reshape(2, SCORE_BINS)


def _add_errors(result: Tally, predicted: np.ndarray, actual: np.ndarray) -> None:
    """A regressor's labeled predictions counted (NaN for a value that is no number): the pairs of numbers'
    summed errors, and their actuals' mean and spread."""
    both = ~np.isnan(predicted) & ~np.isnan(actual)
    if not both.any():
        return
    predicted, actual = predicted[both], actual[both]
    result.scored_pairs = len(actual)
    # fsum: exactly rounded sums, so that a constant target's spread is exactly 0, as numpy finds it.
    result.actual_mean = math.fsum(actual.tolist()) / len(actual)
    with np.errstate(over="ignore"):  # a square too large for a float is inf, as Python's floats make it
        errors = actual - predicted
        deviations = actual - result.actual_mean
        result.squared_error = _fsum((errors * errors).tolist())
        result.actual_spread = _fsum((deviations * deviations).tolist())
    result.absolute_error = _fsum(np.abs(errors).tolist())


def _latency_bins(milliseconds: np.ndarray) -> np.ndarray:
    """Each latency's bin (LATENCY_BINS)."""
    above = np.maximum(milliseconds, LATENCY_FLOOR_MS) / LATENCY_FLOOR_MS
    return np.minimum(LATENCY_BINS - 1, np.ceil(np.log(above) / _LOG_GROWTH)).astype(np.int64)


def _labels(values: list[Any]) -> list[Any]:
    """Each value's label_key: most labels are ints or strings, their own."""
    return values if set(map(type, values)) <= _OWN_LABELS else [label_key(scores.as_label(value)) for value in values]


def _fsum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:  # numbers too large to sum: no mean to show
        return math.inf
