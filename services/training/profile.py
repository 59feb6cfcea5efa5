"""The training data's profile and reference sample, stored with the version as the reference for
drift detection.

Numeric features: decile bin edges (numpy.quantile, linear interpolation) and the row counts in
those bins, so later data can be binned the same way for PSI / chi-square, plus mean, std (population),
min and max, all of the finite values, the count of infinite values and the share of missing values.
Categorical features: the frequencies of the 50 most common categories and "__other__" for the rest
(Evidently's reference-frequency approach). The target: class frequencies for classification, deciles
and moments for regression. Plain JSON only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from shared.served_model import REFERENCE_PREDICTION

PROFILE_VERSION = 1
QUANTILES = np.linspace(0.0, 1.0, 11)
TOP_CATEGORIES = 50
OTHER = "__other__"


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def numeric_profile(values: pd.Series) -> dict[str, Any]:
    """Decile edges, counts per bin, moments and missing share of one numeric column."""
    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    missing = np.isnan(array)
    # Infinities are counted, never binned or averaged: an edge or a mean of inf is no JSON number.
    present = array[np.isfinite(array)]
    summary: dict[str, Any] = {"kind": "numeric", "count": int(present.size),
                               "infinite": int(np.isinf(array).sum()),
                               "null_share": float(missing.mean()) if array.size else 0.0}
    if not present.size:
        return {**summary, "bin_edges": [], "histogram": [], "mean": None, "std": None, "min": None, "max": None}
    # Repeated quantiles (a column with few values) collapse to distinct edges so every bin is non-empty-width.
    edges = np.unique(np.quantile(present, QUANTILES))
    counts = np.histogram(present, bins=edges)[0] if edges.size > 1 else np.array([present.size])
    return {**summary, "bin_edges": [float(e) for e in edges], "histogram": [int(c) for c in counts],
            "mean": _number(present.mean()), "std": _number(present.std()),
            "min": float(present.min()), "max": float(present.max())}


def categorical_profile(values: pd.Series) -> dict[str, Any]:
    """Frequencies of the most common categories (as strings), the rest under "__other__"."""
    present = values.dropna().astype(str)
    counts = present.value_counts(sort=True)
    top = counts.iloc[:TOP_CATEGORIES]
    frequencies = {str(name): int(count) for name, count in top.items()}
    other = int(counts.iloc[TOP_CATEGORIES:].sum())
    if other:
        frequencies[OTHER] = other
    return {"kind": "categorical", "count": int(present.size), "distinct": int(counts.size),
            "null_share": float(1 - present.size / len(values)) if len(values) else 0.0,
            "frequencies": frequencies}


def profile_training_data(X: pd.DataFrame, y: np.ndarray, feature_kinds: dict[str, str], *,
                          classes: list[Any] | None = None) -> dict[str, Any]:
    """The profile of features X and target y; pass `classes` (encoded order) for a classification target."""
    features = {
        name: numeric_profile(X[name]) if kind == "numeric" else categorical_profile(X[name])
        for name, kind in feature_kinds.items()
    }
    if classes is not None:
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes))
        target = {"kind": "categorical", "count": int(len(y)),
                  "frequencies": {str(label): int(count) for label, count in zip(classes, counts)}}
    else:
        target = numeric_profile(pd.Series(np.asarray(y, dtype=float)))
    return {"version": PROFILE_VERSION, "rows": int(len(X)), "features": features, "target": target}


# Rows of the training features kept with a version for drift tests: all of them when fewer.
REFERENCE_ROWS = 10_000


def reference_sample(X: pd.DataFrame, model: Any, classes: list[Any] | None, *, random_state: int,
                     rows: int = REFERENCE_ROWS) -> pd.DataFrame:
    """Up to `rows` rows of the training features, drawn without replacement (all of them when fewer), in
    the training data's order, with the trained model's prediction of each in the column
    REFERENCE_PREDICTION (a label as the endpoint answers it): the drift tests compare live features
    and predictions against these."""
    sample = X if len(X) <= rows else X.sample(n=rows, random_state=random_state).sort_index()
    predicted = model.predict(sample)
    if classes is not None:
        predicted = np.asarray(classes, dtype=object)[predicted]
    return sample.assign(**{REFERENCE_PREDICTION: predicted})
