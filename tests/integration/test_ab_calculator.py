"""The A/B statistics on numbers a user already has, over HTTP: the figures statsmodels and scipy give on the
same numbers, every arm form answering alike, and bad input a 422 naming its field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

from tests.support.registry import bearer

# The calls read and write no table: once is enough (postgres_only's "what another test proves on SQLite":
# the README tour makes them against make run).
pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

ANALYSIS, SRM, SAMPLE_SIZE = "/api/v1/ab-tests/analysis", "/api/v1/ab-tests/srm", "/api/v1/ab-tests/sample-size"


@pytest.fixture
def viewer(app):
    return bearer(app, "viewer")


def test_a_proportion_is_the_pooled_z_test_with_its_sequential_and_bayesian_figures(client, viewer):
    body = {"kind": "proportion", "arms": {"A": {"n": 10_000, "conversions": 1_000},
                                           "B": {"n": 10_000, "conversions": 1_100}}}
    answer = client.post(ANALYSIS, json=body, headers=viewer)
    assert answer.status_code == 200, answer.json
    result = answer.json
    z, p = proportions_ztest([1_100, 1_000], [10_000, 10_000])
    assert result["statistic"] == pytest.approx(z, rel=1e-9) and result["p_value"] == pytest.approx(p, rel=1e-9)
    assert result["difference"] == pytest.approx(0.01) and result["relative_lift"] == pytest.approx(0.1)
    low, high = result["ci"]
    assert low < 0.01 < high
    assert 0 < result["p_value_sequential"] <= 1 and result["p_value_sequential"] >= result["p_value"]
    assert 0.5 < result["probability_b_beats_a"] < 1
    assert result["insufficient_data"] is False and result["guardrail"] is None


def test_a_mean_answers_alike_from_values_sums_and_mean_and_sd(client, viewer):
    rng = np.random.default_rng(7)
    a, b = rng.normal(10, 2, 400), rng.normal(10.4, 3, 300)
    forms = [{"values": list(a)}, {"n": a.size, "sum": float(a.sum()), "sum_sq": float((a * a).sum())},
             {"n": a.size, "mean": float(a.mean()), "sd": float(a.std(ddof=1))}]
    welch = stats.ttest_ind(b, a, equal_var=False)
    for form in forms:
        answer = client.post(ANALYSIS, json={"kind": "mean", "arms": {"A": form, "B": {"values": list(b)}},
                                             "margin": 0.5, "lower_is_better": True}, headers=viewer)
        assert answer.status_code == 200, answer.json
        assert answer.json["statistic"] == pytest.approx(welch.statistic, rel=1e-7)
        assert answer.json["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
        assert answer.json["df"] == pytest.approx(welch.df, rel=1e-7)
        # Higher is worse here and B is higher by about 0.4, within the margin of 0.5 only by chance.
        assert answer.json["guardrail"]["lower_is_better"] is True and "pass" in answer.json["guardrail"]


def test_an_arm_with_no_units_is_insufficient_data_never_nan(client, viewer):
    answer = client.post(ANALYSIS, json={"kind": "proportion", "arms": {"A": {"n": 0, "conversions": 0},
                                                                        "B": {"n": 3, "conversions": 3}}},
                         headers=viewer)
    assert answer.status_code == 200
    assert answer.json["insufficient_data"] is True and answer.json["p_value"] is None
    assert answer.json["reasons"]["p_value"]


@pytest.mark.parametrize("body, field", [
    ({"kind": "proportion", "arms": {"A": {"n": 10, "conversions": 11}, "B": {"n": 10, "conversions": 1}}}, "arms"),
    ({"kind": "proportion", "arms": {"A": {"values": [1, 0]}, "B": {"n": 10, "conversions": 1}}}, "arms"),
    ({"kind": "mean", "arms": {"A": {"n": 10, "mean": 1, "sd": 1, "sum": 3}, "B": {"values": [1, 2]}}}, "arms"),
    ({"kind": "mean", "arms": {"A": {"n": 10, "sum": 100, "sum_sq": 5}, "B": {"values": [1, 2]}}}, "arms"),
    ({"kind": "proportion", "arms": {"A": {"n": 10.5, "conversions": 1}, "B": {"n": 10, "conversions": 1}}}, "arms"),
    ({"kind": "proportion", "arms": {"A": {"n": 10, "conversions": 1}, "B": {"n": 10, "conversions": 1}},
      "alpha": 0.5}, "alpha"),
    ({"kind": "median", "arms": {"A": {"n": 10, "conversions": 1}, "B": {"n": 10, "conversions": 1}}}, "kind"),
    ({"kind": "proportion", "arms": {"A": {"n": 10, "conversions": 1}}}, "arms"),
    ({"kind": "proportion", "arms": {"A": {"n": 10, "conversions": 1}, "B": {"n": 10, "conversions": 1}},
      "mixing_variance": 0}, "mixing_variance"),
])
def test_bad_analysis_input_is_a_422_naming_its_field(client, viewer, body, field):
    answer = client.post(ANALYSIS, json=body, headers=viewer)
    assert answer.status_code == 422, answer.json
    assert answer.content_type == "application/problem+json"
    assert field in answer.json["errors"], answer.json


def test_the_sample_ratio_check_is_scipys_goodness_of_fit(client, viewer):
    answer = client.post(SRM, json={"counts": [5_000, 5_400]}, headers=viewer)
    expected = stats.chisquare([5_000, 5_400])
    assert answer.status_code == 200
    assert answer.json["chi2"] == pytest.approx(expected.statistic) and answer.json["df"] == 1
    assert answer.json["p_value"] == pytest.approx(expected.pvalue) and answer.json["flagged"] is True
    skewed = client.post(SRM, json={"counts": [9_900, 100], "weights": [99, 1]}, headers=viewer).json
    assert skewed["chi2"] == pytest.approx(0) and skewed["flagged"] is False
    assert client.post(SRM, json={"counts": [1, 2], "weights": [1]}, headers=viewer).status_code == 422
    assert client.post(SRM, json={"counts": [1, -2]}, headers=viewer).status_code == 422


def test_the_sample_size_is_normal_ind_powers(client, viewer):
    answer = client.post(SAMPLE_SIZE, json={"kind": "proportion", "baseline_rate": 0.1, "mde_relative": 0.1,
                                            "ratio": 2}, headers=viewer)
    assert answer.status_code == 200, answer.json
    effect = proportion_effectsize(0.11, 0.1)
    n_a = NormalIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8, ratio=2)
    assert answer.json["n_a"] == math.ceil(n_a) and answer.json["n_b"] == math.ceil(n_a * 2)
    assert answer.json["total"] == answer.json["n_a"] + answer.json["n_b"]
    means = client.post(SAMPLE_SIZE, json={"kind": "mean", "sd": 2.0, "delta": 0.5, "alternative": "larger"},
                        headers=viewer).json
    assert means["n_a"] == math.ceil(NormalIndPower().solve_power(effect_size=0.25, alpha=0.05, power=0.8,
                                                                  alternative="larger"))
    missing = client.post(SAMPLE_SIZE, json={"kind": "mean", "sd": 2.0}, headers=viewer)
    assert missing.status_code == 422 and "delta" in missing.json["errors"]
    no_effect = client.post(SAMPLE_SIZE, json={"kind": "mean", "sd": 2.0, "delta": 0.0}, headers=viewer)
    assert no_effect.status_code == 422 and "effect" in no_effect.json["detail"]


def test_the_calls_need_a_signed_in_caller(client):
    answer = client.post(SRM, json={"counts": [1, 2]})
    assert answer.status_code == 401
