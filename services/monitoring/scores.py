"""Scores of predictions against their actuals, from the sums tally.py keeps (counts of label pairs,
summed errors), as scikit-learn computes them, without importing it.

The monitoring service answers reads; loading scikit-learn into every web worker for a handful of sums
is not worth it. tests/unit/test_scores.py holds each score, through tallies, to scikit-learn's (or
numpy's) answer on the same input, edge cases included.

Classification labels are compared as JSON values; a record's `{"prediction": ...}` or `{"actual": ...}`
object stands for its value (the brief's example sends them so). Labels 0/1 (or false/true) are scored
as scikit-learn's binary average with 1 positive; any other labels with the macro average over every
label seen, as `average="macro"` does, a class never predicted counting 0 (zero_division=0).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

BINARY = ({0, 1}, {False, True})
# Model types whose predictions are numbers scored against numbers.
NUMERIC_TYPES = ("regression", "forecasting")
# Which probability is the positive class's, for roc_auc: labels 0/1 or false/true, as JSON keys them.
POSITIVE_KEYS = ("1", "True", "true")


def value_of(recorded: Any, key: str) -> Any:
    """`recorded`, or its `key` when it is an object holding one ({"prediction": 0.85, "confidence": ...})."""
    return recorded.get(key) if isinstance(recorded, dict) and key in recorded else recorded


def positive_score(probabilities: Any) -> Any:
    """The positive class's probability (any JSON value; None when there is none), for roc_auc."""
    if isinstance(probabilities, dict):
        for key in POSITIVE_KEYS:
            if key in probabilities:
                return probabilities[key]
    return None


def label_of(predicted: Any) -> Any:
    """A classification's label. A prediction strictly between 0 and 1 is a binary model's probability of
    1 (the brief's example sends 0.85 against an actual of 1): its label is 1 from 0.5 up (and it is the
    score when no probabilities came with it: tally.py)."""
    return int(predicted >= 0.5) if isinstance(predicted, float) and 0 < predicted < 1 else predicted


def number(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (a label, a bool, null)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def numbers(values: Iterable[Any]) -> np.ndarray:
    """number() of each JSON value (orjson's ints and floats are those types exactly), NaN for its None."""
    found = np.array([value if type(value) in (int, float) else math.nan for value in values], dtype=float)
    found[np.isinf(found)] = math.nan
    return found


def percentile(values: list[float], q: float) -> float | None:
    """numpy.percentile's default (linear interpolation between closest ranks); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def as_label(value: Any) -> Any:
    # JSON's 1 and 1.0 are one label, as numpy compares them; a string stays a string.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def classification(pairs: Mapping[tuple[Any, Any], int]) -> dict[str, Any]:
    """accuracy, precision, recall and f1 of the (predicted, actual) label pairs counted in `pairs`."""
    total = sum(pairs.values())
    if not total:
        return {"accuracy": None, "precision": None, "recall": None, "f1": None}
    labels = {label for pair in pairs for label in pair}
    scores = [_precision_recall_f1(pairs, label) for label in ([1] if is_binary(labels) else _sorted(labels))]
    precision, recall, f1 = (sum(score[i] for score in scores) / len(scores) for i in range(3))
    correct = sum(count for (p, a), count in pairs.items() if p == a)
    return {"accuracy": correct / total, "precision": precision, "recall": recall, "f1": f1}


def is_binary(labels: set[Any]) -> bool:
    """Whether labels (as_label's) are scored as scikit-learn's binary average: 0/1 or false/true."""
    return any(labels <= allowed for allowed in BINARY) and all(isinstance(v, (int, bool)) for v in labels)


def _sorted(labels: set[Any]) -> list[Any]:
    return sorted(labels, key=lambda label: (type(label).__name__, label))


def _precision_recall_f1(pairs: Mapping[tuple[Any, Any], int], label: Any) -> tuple[float, float, float]:
    true_positive = pairs.get((label, label), 0)
    predicted = sum(count for (p, _), count in pairs.items() if p == label)
    actual = sum(count for (_, a), count in pairs.items() if a == label)
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * true_positive / (predicted + actual) if predicted + actual else 0.0
    return precision, recall, f1


def regression(count: int, squared_error: float, absolute_error: float, actual_spread: float) -> dict[str, Any]:
    """rmse, mae and r2 from `count` pairs' summed squared and absolute errors and the actuals' summed
    squared deviations from their mean (scikit-learn's r2: 1.0 for a perfect fit of a constant target,
    else 0.0 there)."""
    if not count:
        return {"rmse": None, "mae": None, "r2": None}
    r2 = 1 - squared_error / actual_spread if actual_spread else (1.0 if squared_error == 0 else 0.0)
    return {"rmse": math.sqrt(squared_error / count), "mae": absolute_error / count, "r2": r2}
