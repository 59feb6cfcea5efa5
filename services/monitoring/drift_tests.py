"""Whether one feature's values drifted between a reference sample and a current window: the test
Evidently picks by default, with its thresholds, and two further measures (PSI, missing-rate change).

Which test (Evidently's `_get_default_stattest`): a numeric feature with at most 5 distinct values
(reference and current together) counts as categorical. Reference of at most 1,000 rows: numeric ->
Kolmogorov-Smirnov (drift when p < 0.05); categorical with more than 2 values -> chi-square; at most
2 -> the two-proportion z-test (p < 0.05). Larger reference: numeric -> the Wasserstein distance
divided by the reference's standard deviation (drift when >= 0.1); categorical -> the Jensen-Shannon
distance of the two frequency vectors (>= 0.1).

One deliberate difference: Evidently's chi-square takes the reference's frequencies as the exact
expected ones and so flags unchanged data far too often at any size; ours is the two-sample test of
homogeneity on the two samples' counts (scipy.stats.chi2_contingency), which asks the same question
of two samples. tests/unit/test_drift_tests.py holds every statistic to scipy's or statsmodels' own
computation on the same input.

Missing values (None, NaN) are left out of the tests and reported as the change in their share.
numpy and scipy are imported with this module: it runs in the drift workers, not in web processes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats
from scipy.spatial import distance

from shared.served_model import CATEGORICAL, NUMERIC  # the platform's names of feature kinds

SMALL_REFERENCE = 1000
FEW_VALUES = 5
P_VALUE_THRESHOLD = 0.05
DISTANCE_THRESHOLD = 0.1
PSI_THRESHOLD = 0.1
# Evidently's floor under the reference's spread, so that a constant reference does not divide by zero.
MIN_SPREAD = 0.001
# PSI's stand-in for an empty bin's share (Evidently's): log(0) has no value.
EMPTY_BIN_SHARE = 0.0001


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str  # as tested: a numeric feature with few values is tested as categorical
    test: str  # ks, chi_square, z, wasserstein, jensen_shannon
    statistic: float
    p_value: float | None  # the p-value tests only
    threshold: float
    drifted: bool
    psi: float | None
    missing_rate_change: float
    reference_rows: int
    current_rows: int


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def choose_test(kind: str, reference_rows: int, distinct_values: int) -> tuple[str, str]:
    """(the kind tested as, the test) for a feature, by Evidently's default rule."""
    tested_as = CATEGORICAL if kind == CATEGORICAL or distinct_values <= FEW_VALUES else NUMERIC
    if reference_rows <= SMALL_REFERENCE:
        if tested_as == NUMERIC:
            return tested_as, "ks"
        return tested_as, "chi_square" if distinct_values > 2 else "z"
    return tested_as, "wasserstein" if tested_as == NUMERIC else "jensen_shannon"


def _counts(reference: Sequence, current: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's count of every value either holds, in one order."""
    reference_counts, current_counts = Counter(reference), Counter(current)
    keys = sorted(reference_counts.keys() | current_counts.keys(), key=lambda key: (type(key).__name__, key))
    return (np.array([reference_counts[key] for key in keys], dtype=float),
            np.array([current_counts[key] for key in keys], dtype=float))


def z_test(reference: Sequence, current: Sequence) -> tuple[float, float]:
    """The pooled two-proportion z-test of the share of all but the first value (sorted), two-sided:
    (z, p). Both samples of one and the same value: no difference, p = 1."""
    reference_counts, current_counts = _counts(reference, current)
    if len(reference_counts) < 2:
        return 0.0, 1.0
    n1, n2 = reference_counts.sum(), current_counts.sum()
    p1, p2 = 1 - reference_counts[0] / n1, 1 - current_counts[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, 2 * stats.norm.sf(abs(z))


def chi_square(reference: Sequence, current: Sequence) -> tuple[float, float]:
    """The chi-square test of homogeneity of the two samples' counts: (statistic, p)."""
    reference_counts, current_counts = _counts(reference, current)
    if len(reference_counts) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([reference_counts, current_counts]))
    return float(result.statistic), float(result.pvalue)


def wasserstein_normed(reference: Sequence[float], current: Sequence[float]) -> float:
    return stats.wasserstein_distance(reference, current) / max(float(np.std(reference)), MIN_SPREAD)


def jensen_shannon(reference: Sequence, current: Sequence) -> float:
    """The Jensen-Shannon distance (natural log) of the two samples' value frequencies."""
    reference_counts, current_counts = _counts(reference, current)
    return float(distance.jensenshannon(reference_counts / reference_counts.sum(),
                                        current_counts / current_counts.sum()))


def psi(reference: Sequence, current: Sequence, kind: str) -> float:
    """The population stability index, binned as Evidently bins it: numbers with more than 20 distinct
    reference values in Sturges' bins over both samples, anything else by value; an empty bin's share
    taken as EMPTY_BIN_SHARE (or a millionth of the smallest share when that is smaller)."""
    if kind == NUMERIC and len(set(reference)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        reference_share = np.histogram(reference, edges)[0] / len(reference)
        current_share = np.histogram(current, edges)[0] / len(current)
    else:
        reference_counts, current_counts = _counts(reference, current)
        reference_share, current_share = reference_counts / len(reference), current_counts / len(current)
    reference_share, current_share = _fill_empty(reference_share), _fill_empty(current_share)
    return float(np.sum((reference_share - current_share) * np.log(reference_share / current_share)))


def _fill_empty(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 10**6 if smallest <= EMPTY_BIN_SHARE else EMPTY_BIN_SHARE, shares)


def feature_drift(name: str, kind: str, reference: Sequence, current: Sequence) -> FeatureDrift | None:
    """The drift of one feature, its missing values aside; None when either sample has no value."""
    present_reference = [value for value in reference if not _missing(value)]
    present_current = [value for value in current if not _missing(value)]
    if not present_reference or not present_current:
        return None
    tested_as, test = choose_test(kind, len(present_reference), len(set(present_reference) | set(present_current)))
    p_value = None
    if test == "ks":
        result = stats.ks_2samp(present_reference, present_current)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    elif test == "chi_square":
        statistic, p_value = chi_square(present_reference, present_current)
    elif test == "z":
        statistic, p_value = z_test(present_reference, present_current)
    elif test == "wasserstein":
        statistic = wasserstein_normed(present_reference, present_current)
    else:
        statistic = jensen_shannon(present_reference, present_current)
    threshold = P_VALUE_THRESHOLD if p_value is not None else DISTANCE_THRESHOLD
    drifted = p_value < threshold if p_value is not None else statistic >= threshold
    missing_change = (len(current) - len(present_current)) / len(current) - \
        (len(reference) - len(present_reference)) / len(reference)
    return FeatureDrift(name=name, kind=tested_as, test=test, statistic=float(statistic), p_value=p_value,
                        threshold=threshold, drifted=bool(drifted), psi=psi(present_reference, present_current, tested_as),
                        missing_rate_change=missing_change, reference_rows=len(reference), current_rows=len(current))


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in the given order."""
    return [float(p) for p in stats.false_discovery_control(p_values, method="bh")] if p_values else []
