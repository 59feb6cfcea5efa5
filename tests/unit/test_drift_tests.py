"""Drift tests against scipy's and statsmodels' own computations on the same input (to 1e-9), the test
chosen by Evidently's default rule, and on generated data the drifted features exactly the shifted ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance
from statsmodels.stats.proportion import proportions_ztest

from services.monitoring import drift_tests
from services.monitoring.drift_tests import CATEGORICAL, NUMERIC, feature_drift

TOLERANCE = 1e-9


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("kind, reference_rows, distinct, expected", [
    (NUMERIC, 1000, 50, (NUMERIC, "ks")),
    (NUMERIC, 1001, 50, (NUMERIC, "wasserstein")),
    (NUMERIC, 500, 5, (CATEGORICAL, "chi_square")),  # few values: categorical
    (NUMERIC, 500, 6, (NUMERIC, "ks")),
    (NUMERIC, 500, 2, (CATEGORICAL, "z")),
    (NUMERIC, 5000, 4, (CATEGORICAL, "jensen_shannon")),
    (CATEGORICAL, 1000, 3, (CATEGORICAL, "chi_square")),
    (CATEGORICAL, 1000, 2, (CATEGORICAL, "z")),
    (CATEGORICAL, 1001, 2, (CATEGORICAL, "jensen_shannon")),
])
def test_the_test_is_evidentlys_default_choice(kind, reference_rows, distinct, expected):
    assert drift_tests.choose_test(kind, reference_rows, distinct) == expected


def test_ks_is_scipys():
    reference, current = _rng(1).normal(0, 1, 800).tolist(), _rng(2).normal(0.2, 1, 300).tolist()
    result = feature_drift("x", NUMERIC, reference, current)
    expected = stats.ks_2samp(reference, current)
    assert result.test == "ks"
    assert result.statistic == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert result.p_value == pytest.approx(expected.pvalue, abs=TOLERANCE)


def test_chi_square_is_the_two_sample_test_of_homogeneity():
    reference = _rng(3).choice(["a", "b", "c", "d"], 600, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    current = _rng(4).choice(["a", "b", "c", "e"], 400, p=[0.3, 0.3, 0.3, 0.1]).tolist()  # d gone, e new
    result = feature_drift("x", CATEGORICAL, reference, current)
    keys = sorted(set(reference) | set(current))
    table = [[reference.count(key) for key in keys], [current.count(key) for key in keys]]
    expected = stats.chi2_contingency(table)
    assert result.test == "chi_square"
    assert result.statistic == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert result.p_value == pytest.approx(expected.pvalue, abs=TOLERANCE)


@pytest.mark.parametrize("reference, current", [
    (["yes"] * 70 + ["no"] * 30, ["yes"] * 40 + ["no"] * 60),
    ([0] * 500 + [1] * 500, [0] * 480 + [1] * 520),
    (["only"] * 50, ["other"] * 50),
])
def test_the_z_test_is_statsmodels_pooled_two_proportion_test(reference, current):
    first = sorted(set(reference) | set(current))[0]
    count = [sum(value != first for value in reference), sum(value != first for value in current)]
    z, p = proportions_ztest(count, [len(reference), len(current)])
    result = feature_drift("x", CATEGORICAL, reference, current)
    assert result.test == "z"
    assert result.statistic == pytest.approx(z, abs=TOLERANCE) and result.p_value == pytest.approx(p, abs=TOLERANCE)


def test_one_and_the_same_value_on_both_sides_is_no_drift():
    result = feature_drift("x", CATEGORICAL, ["a"] * 30, ["a"] * 20)
    assert (result.test, result.p_value, result.drifted) == ("z", 1.0, False)


def test_wasserstein_is_normed_by_the_references_spread():
    reference, current = _rng(5).normal(10, 3, 5000).tolist(), _rng(6).normal(10.5, 3, 2000).tolist()
    result = feature_drift("x", NUMERIC, reference, current)
    assert result.test == "wasserstein" and result.p_value is None
    assert result.statistic == pytest.approx(stats.wasserstein_distance(reference, current) / np.std(reference),
                                             abs=TOLERANCE)
    tied_reference, tied_current = _rng(13).integers(0, 40, 4000).tolist(), _rng(14).integers(3, 45, 1500).tolist()
    tied = feature_drift("x", NUMERIC, tied_reference, tied_current)  # many ties within and across the samples
    assert tied.statistic == pytest.approx(
        stats.wasserstein_distance(tied_reference, tied_current) / np.std(tied_reference), abs=TOLERANCE)
    constant = feature_drift("x", NUMERIC, [1.0] * 1500 + [2.0] * 1500, [1.0] * 10 + [9.0] * 10)
    assert constant.test == "jensen_shannon"  # 3 values: categorical


def test_jensen_shannon_is_scipys_on_the_frequencies():
    reference = _rng(7).choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2]).tolist()
    current = _rng(8).choice(["a", "b", "c", "d"], 1000, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    keys = sorted(set(reference) | set(current))
    expected = distance.jensenshannon([reference.count(k) / 3000 for k in keys], [current.count(k) / 1000 for k in keys])
    result = feature_drift("x", CATEGORICAL, reference, current)
    assert result.test == "jensen_shannon" and result.statistic == pytest.approx(expected, abs=TOLERANCE)


def test_psi_bins_numbers_by_sturges_and_fills_empty_bins():
    reference, current = _rng(9).normal(0, 1, 2000), _rng(10).normal(0.5, 1.2, 700)
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    ref_share = np.histogram(reference, edges)[0] / len(reference)
    cur_share = np.histogram(current, edges)[0] / len(current)
    ref_share[ref_share == 0], cur_share[cur_share == 0] = 0.0001, 0.0001
    expected = np.sum((ref_share - cur_share) * np.log(ref_share / cur_share))
    assert drift_tests.psi(drift_tests.column(reference.tolist()), drift_tests.column(current.tolist()),
                          NUMERIC) == pytest.approx(expected, abs=TOLERANCE)


def test_missing_values_are_left_out_and_their_share_reported():
    reference = [1.0, 2.0, None, 4.0, float("nan"), 6.0, 7.0, 8.0, 9.0, 10.0]
    current = [1.0, None, 3.0, 4.0]
    result = feature_drift("x", NUMERIC, reference, current)
    assert result.missing_rate_change == pytest.approx(0.25 - 0.2)
    assert result.p_value == pytest.approx(stats.ks_2samp([1, 2, 4, 6, 7, 8, 9, 10], [1, 3, 4]).pvalue, abs=TOLERANCE)
    assert feature_drift("x", NUMERIC, [None, None], [1.0]) is None


def test_benjamini_hochberg_is_scipys():
    p_values = [0.01, 0.04, 0.03, 0.5, 0.002]
    assert drift_tests.benjamini_hochberg(p_values) == pytest.approx(
        stats.false_discovery_control(p_values, method="bh").tolist(), abs=TOLERANCE)


@pytest.mark.parametrize("rows", [600, 5000])  # each side of Evidently's 1,000-row switch
def test_on_generated_data_the_drifted_features_are_exactly_the_shifted_ones(rows):
    rng = _rng(rows)
    current_rows = rows // 2

    def sample(n: int, shifted: bool) -> dict:
        return {
            "income": rng.normal(50 + (15 if shifted else 0), 10, n).tolist(),
            "age": rng.normal(40, 12, n).tolist(),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]).tolist(),
            "region": rng.choice(["north", "south", "east", "west"], n).tolist(),
            "churned_before": rng.choice([0, 1], n, p=[0.5, 0.5] if shifted else [0.8, 0.2]).tolist(),
            "mobile": rng.choice(["yes", "no"], n, p=[0.6, 0.4]).tolist(),
            "support_calls": rng.choice([0, 1, 2, 3], n, p=[0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]).tolist(),
        }

    kinds = {"income": NUMERIC, "age": NUMERIC, "plan": CATEGORICAL, "region": CATEGORICAL,
             "churned_before": NUMERIC, "mobile": CATEGORICAL, "support_calls": NUMERIC}
    reference, current = sample(rows, False), sample(current_rows, True)
    # Only the shifted features' current values differ in distribution: age, region and mobile do not move.
    for name in ("age", "region", "mobile"):
        current[name] = sample(current_rows, False)[name]
    results = {name: feature_drift(name, kind, reference[name], current[name]) for name, kind in kinds.items()}
    assert {name for name, result in results.items() if result.drifted} == {"income", "plan", "churned_before",
                                                                             "support_calls"}


def test_a_prepared_column_tests_as_its_raw_values_do_from_a_list_an_array_or_a_series():
    import pandas as pd

    rng = _rng(12)
    reference = rng.normal(0, 1, 3000).round(3)
    current = rng.normal(0.3, 1, 800).round(3).tolist()
    current[:5] = [None, float("nan"), [1, 2], {"a": 1}, None]  # nested values count as missing
    expected = feature_drift("x", NUMERIC, reference.tolist(), [None] * 5 + current[5:])
    prepared = drift_tests.column(reference)
    for given in (reference, pd.Series(reference), prepared, prepared):  # a kept column answers again
        assert feature_drift("x", NUMERIC, given, current) == expected
    assert expected.missing_rate_change == pytest.approx(5 / 800)
    codes = rng.choice([0, 1, 2], 3000)
    as_labels = feature_drift("c", CATEGORICAL, [str(code) for code in codes], ["0"] * 500 + ["2"] * 300)
    as_numbers = feature_drift("c", CATEGORICAL, codes, [0] * 500 + [2.0] * 300)  # 2 and 2.0 are one value
    assert (as_numbers.test, as_numbers.statistic) == (as_labels.test, pytest.approx(as_labels.statistic, abs=TOLERANCE))
