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

Missing values (None, NaN) are left out of the tests and reported as the change in their share; a
value a client sent as a list or an object is no value a test can compare: missing too.

Each sample is prepared once as a Column (`column`): its present values sorted as float64 when every
one is a number (bools count as 0 and 1, as the counts always merged them), else their counts. The
drift pool keeps a reference's columns between reports (drift.py), so a report sorts and counts only
its window. Values compare as numbers or as JSON values, never by type name: 1 and 1.0 are one value.
numpy and scipy are imported with this module: it runs in the drift workers, not in web processes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
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
# A categorical feature's chart shows its most common values, the rest as one bar.
CHART_VALUES = 20
OTHER_VALUES = "(other values)"
# PSI's stand-in for an empty bin's share (Evidently's): log(0) has no value.
EMPTY_BIN_SHARE = 0.0001
# Python types whose values are numbers to the tests (None is missing).
NUMBER_TYPES = frozenset({int, float, bool, type(None)})
NESTED_TYPES = (list, dict)


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
    # The shares PSI compares, for a chart: {"bins": [edges] (numbers) or [values], "reference": [...], "current": [...]}.
    histogram: dict[str, list] | None = None


class Column:
    """One sample of a feature, prepared for the tests: how many rows it has and how many hold a value,
    and those values either sorted as numbers (`numbers`) or counted (`counts`)."""

    def __init__(self, rows: int, *, numbers: np.ndarray | None = None, counts: Counter | None = None):
        self.rows = rows
        self._numbers, self._counts = numbers, counts
        self.present = len(numbers) if numbers is not None else sum(counts.values())

    @cached_property
    def numbers(self) -> np.ndarray:
        """The present values, sorted, as float64 (a value that is no number raises ValueError)."""
        if self._numbers is not None:
            return self._numbers
        return np.sort(np.repeat(np.asarray(list(self._counts), dtype=float), list(self._counts.values())))

    @cached_property
    def counts(self) -> Counter:
        """Each present value's count."""
        if self._counts is not None:
            return self._counts
        keys, counts = np.unique(self._numbers, return_counts=True)
        return Counter(dict(zip(keys.tolist(), counts.tolist())))

    @cached_property
    def distinct(self) -> int:
        if self._counts is not None:
            return len(self._counts)
        return int(np.count_nonzero(self._numbers[1:] != self._numbers[:-1])) + 1 if self.present else 0

    @cached_property
    def spread(self) -> float:
        """The standard deviation of the present values (numpy's, ddof 0)."""
        return float(np.std(self.numbers))

    def distinct_with(self, other: Column) -> int:
        """The number of distinct values the two samples hold together, counted only as far as FEW_VALUES + 1."""
        if self.distinct > FEW_VALUES or other.distinct > FEW_VALUES:
            return max(self.distinct, other.distinct)
        return len(self.counts.keys() | other.counts.keys())


def column(values: Any) -> Column:
    """A sample prepared for the tests: from a numpy array, a pandas Series or a sequence of JSON values."""
    if isinstance(values, Column):
        return values
    array = values.to_numpy() if hasattr(values, "to_numpy") else values
    if isinstance(array, np.ndarray) and array.dtype.kind in "biuf":
        numbers = array.astype(float, copy=False)
    else:
        values = array.tolist() if isinstance(array, np.ndarray) else list(array)
        types = set(map(type, values))
        if types <= NUMBER_TYPES:
            numbers = np.array(values, dtype=float)  # None -> nan
        else:
            if any(issubclass(kind, NESTED_TYPES) for kind in types):
                values = [None if isinstance(value, NESTED_TYPES) else value for value in values]
            counts = Counter(values)
            for missing in [key for key in counts if key is None or key != key]:  # key != key: NaN
                del counts[missing]
            return Column(len(values), counts=counts)
    present = numbers[~np.isnan(numbers)]
    present.sort()
    return Column(len(numbers), numbers=present)


def choose_test(kind: str, reference_rows: int, distinct_values: int) -> tuple[str, str]:
    """(the kind tested as, the test) for a feature, by Evidently's default rule."""
    tested_as = CATEGORICAL if kind == CATEGORICAL or distinct_values <= FEW_VALUES else NUMERIC
    if reference_rows <= SMALL_REFERENCE:
        if tested_as == NUMERIC:
            return tested_as, "ks"
        return tested_as, "chi_square" if distinct_values > 2 else "z"
    return tested_as, "wasserstein" if tested_as == NUMERIC else "jensen_shannon"


def _keys(reference: Column, current: Column) -> list:
    """Every value either sample holds, in one order: numbers first, in order, then strings in order."""
    return sorted(reference.counts.keys() | current.counts.keys(), key=lambda key: (not isinstance(key, (int, float)), key))


def _counts(reference: Column, current: Column) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's count of every value either holds, in `_keys`' order."""
    reference_counts, current_counts = reference.counts, current.counts
    keys = _keys(reference, current)
    return (np.array([reference_counts[key] for key in keys], dtype=float),
            np.array([current_counts[key] for key in keys], dtype=float))


def z_test(reference: Column, current: Column) -> tuple[float, float]:
    """The pooled two-proportion z-test of the share of all but the first value (sorted), two-sided:
    (z, p). Both samples of one and the same value: no difference, p = 1."""
    reference_counts, current_counts = _counts(reference, current)
    if len(reference_counts) < 2:
        return 0.0, 1.0
    n1, n2 = reference_counts.sum(), current_counts.sum()
    p1, p2 = 1 - reference_counts[0] / n1, 1 - current_counts[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(z), float(2 * stats.norm.sf(abs(z)))


def chi_square(reference: Column, current: Column) -> tuple[float, float]:
    """The chi-square test of homogeneity of the two samples' counts: (statistic, p)."""
    reference_counts, current_counts = _counts(reference, current)
    if len(reference_counts) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([reference_counts, current_counts]))
    return float(result.statistic), float(result.pvalue)


def wasserstein_normed(reference: Column, current: Column) -> float:
    """The first Wasserstein distance of the two samples (the area between their empirical CDFs, as
    scipy.stats.wasserstein_distance computes it), over the reference's standard deviation.

    On the already sorted values, a stable merge tells which sample each merged value came from, and the
    running count of each sample's values is its CDF at that value wherever the next value is larger;
    where it is not (ties), the interval's width is 0 and so is its term. Half the time of searching
    each merged value in both samples."""
    u, v = reference.numbers, current.numbers
    joined = np.concatenate((u, v))
    order = np.argsort(joined, kind="stable")  # two sorted runs: one merge
    both = joined[order]
    from_u = np.cumsum(order[:-1] < u.size)
    u_cdf = from_u / u.size
    v_cdf = (np.arange(1, both.size) - from_u) / v.size
    return float(np.sum(np.abs(u_cdf - v_cdf) * np.diff(both))) / max(reference.spread, MIN_SPREAD)


def jensen_shannon(reference: Column, current: Column) -> float:
    """The Jensen-Shannon distance (natural log) of the two samples' value frequencies."""
    reference_counts, current_counts = _counts(reference, current)
    return float(distance.jensenshannon(reference_counts / reference_counts.sum(),
                                        current_counts / current_counts.sum()))


def binned(reference: Column, current: Column, kind: str) -> tuple[list, np.ndarray, np.ndarray]:
    """The bins PSI compares, as Evidently bins it, and each sample's share of its present values per bin:
    numbers with more than 20 distinct reference values in Sturges' bins over both samples (the bins are
    their edges, one more than the shares), anything else by value (the bins are the values)."""
    if kind == NUMERIC and reference.distinct > 20:
        edges = np.histogram_bin_edges(np.concatenate([reference.numbers, current.numbers]), bins="sturges")
        return (edges.tolist(), _histogram(reference.numbers, edges) / reference.present,
                _histogram(current.numbers, edges) / current.present)
    keys, (reference_counts, current_counts) = _keys(reference, current), _counts(reference, current)
    return keys, reference_counts / reference.present, current_counts / current.present


def psi(reference: Column, current: Column, kind: str) -> float:
    """The population stability index over `binned`'s shares (see _psi)."""
    return _psi(*binned(reference, current, kind)[1:])


def _psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    """The population stability index of two samples' shares per bin, an empty bin's share taken as
    EMPTY_BIN_SHARE (or a millionth of the smallest share when that is smaller)."""
    reference_share, current_share = _fill_empty(reference_share), _fill_empty(current_share)
    return float(np.sum((reference_share - current_share) * np.log(reference_share / current_share)))


def histogram(bins: list, reference_share: np.ndarray, current_share: np.ndarray) -> dict[str, list]:
    """`binned`'s shares for a chart, values beyond the CHART_VALUES most common (in both samples) as one "other"."""
    if len(bins) == len(reference_share) and len(bins) > CHART_VALUES:
        order = np.argsort(-(reference_share + current_share), kind="stable")
        kept, rest = np.sort(order[:CHART_VALUES - 1]), order[CHART_VALUES - 1:]
        bins = [bins[index] for index in kept] + [OTHER_VALUES]
        reference_share = np.append(reference_share[kept], reference_share[rest].sum())
        current_share = np.append(current_share[kept], current_share[rest].sum())
    return {"bins": [bin if isinstance(bin, (int, float, str)) else str(bin) for bin in bins],
            "reference": reference_share.tolist(), "current": current_share.tolist()}


def _histogram(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """numpy.histogram's counts of sorted values in bins of `edges` (the last bin closed), counted as it
    counts them for given edges once it has sorted the values."""
    return np.diff(np.concatenate((ordered.searchsorted(edges[:-1], "left"), ordered.searchsorted(edges[-1:], "right"))))


def _fill_empty(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 10**6 if smallest <= EMPTY_BIN_SHARE else EMPTY_BIN_SHARE, shares)


def feature_drift(name: str, kind: str, reference: Column | Sequence, current: Column | Sequence) -> FeatureDrift | None:
    """The drift of one feature, its missing values aside; None when either sample has no value."""
    reference, current = column(reference), column(current)
    if not reference.present or not current.present:
        return None
    tested_as, test = choose_test(kind, reference.present, reference.distinct_with(current))
    p_value = None
    if test == "ks":
        result = stats.ks_2samp(reference.numbers, current.numbers)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    elif test == "chi_square":
        statistic, p_value = chi_square(reference, current)
    elif test == "z":
        statistic, p_value = z_test(reference, current)
    elif test == "wasserstein":
        statistic = wasserstein_normed(reference, current)
    else:
        statistic = jensen_shannon(reference, current)
    threshold = P_VALUE_THRESHOLD if p_value is not None else DISTANCE_THRESHOLD
    drifted = p_value < threshold if p_value is not None else statistic >= threshold
    missing_change = (current.rows - current.present) / current.rows - \
        (reference.rows - reference.present) / reference.rows
    bins = binned(reference, current, tested_as)  # once for both: PSI's shares are the chart's
    return FeatureDrift(name=name, kind=tested_as, test=test, statistic=float(statistic), p_value=p_value,
                        threshold=threshold, drifted=bool(drifted), psi=_psi(*bins[1:]),
                        missing_rate_change=missing_change, reference_rows=reference.rows, current_rows=current.rows,
                        histogram=histogram(*bins))


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in the given order."""
    return [float(p) for p in stats.false_discovery_control(p_values, method="bh")] if p_values else []
