"""The verdict a look's figures reach (services/monitoring/ab_analysis.decide): not before min_sample_size
unless the test is over; invalid on a sample ratio mismatch or a breached guardrail; the decisive success
metrics' direction; a guardrail that fails its margin holding B back; the sequential reading at the end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.monitoring.ab_analysis import (
    A_WINS, B_WINS, BREACHED, GUARDRAIL, HOLDS, INVALID, NO_DIFFERENCE, SUCCESS, UNDECIDED, decide,
)
from services.monitoring.tables import ABTestAnalysis

NOW = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)


def _test(days_running: float = 3, **fields) -> ABTestAnalysis:
    return ABTestAnalysis(**{"min_sample_size": 1000, "max_duration_days": 30, "significance_level": 0.05,
                             "started_at": NOW - timedelta(days=days_running), **fields})


def _success(name="accuracy", p=0.5, low=-0.01, high=0.03, lower_is_better=False) -> dict:
    return {"name": name, "role": SUCCESS, "p_value_sequential_adjusted": p, "ci_sequential": [low, high],
            "difference": (low + high) / 2, "lower_is_better": lower_is_better, "estimate_a": 0.8,
            "estimate_b": 0.8 + (low + high) / 2, "relative_lift": (low + high) / 2 / 0.8, "insufficient_data": False}


def _guardrail(name="latency", status=UNDECIDED, passed=True, insufficient=False) -> dict:
    return {"name": name, "role": GUARDRAIL, "status": status, "guardrail": {"pass": passed},
            "insufficient_data": insufficient, "estimate_a": 20.0, "estimate_b": 21.0, "margin": 2.0,
            "ci_sequential": [0.5, 1.5], "lower_is_better": True}


def _results(*metrics, units=(1200, 1180), flagged=False) -> dict:
    return {"units": {"A": units[0], "B": units[1]}, "metrics": list(metrics),
            "srm": {"flagged": flagged, "p_value": 1e-6 if flagged else 0.6, "weights": [0.5, 0.5]}}


def test_nothing_is_decided_before_both_arms_reach_min_sample_size():
    decisive = _success(p=1e-6, low=0.05, high=0.09)
    assert decide(_test(), _results(decisive, units=(999, 5000)), now=NOW) is None
    assert decide(_test(), _results(decisive, units=(1000, 1000)), now=NOW)[0] == B_WINS


def test_a_sample_ratio_mismatch_or_a_breached_guardrail_make_the_test_invalid():
    decisive = _success(p=1e-6, low=0.05, high=0.09)
    verdict, summary = decide(_test(), _results(decisive, flagged=True), now=NOW)
    assert verdict == INVALID and "sample ratio mismatch" in summary and "1,200 (A) to 1,180 (B)" in summary
    verdict, summary = decide(_test(), _results(decisive, _guardrail(status=BREACHED)), now=NOW)
    assert verdict == INVALID and "breached the latency guardrail" in summary


def test_decisive_metrics_name_the_winner_by_direction_and_lower_being_better():
    assert decide(_test(), _results(_success(p=1e-4, low=-0.09, high=-0.04)), now=NOW)[0] == A_WINS
    # Lower latency is better: B's lower latency wins.
    faster = _success(name="latency", p=1e-4, low=-5.0, high=-1.0, lower_is_better=True)
    assert decide(_test(), _results(faster), now=NOW)[0] == B_WINS
    verdict, summary = decide(_test(), _results(_success(p=1e-4, low=0.02, high=0.05), faster), now=NOW)
    assert verdict == B_WINS and "accuracy" in summary and "latency" in summary


def test_conflicting_decisive_metrics_are_a_trade_off_without_a_winner():
    better, worse = _success(p=1e-4, low=0.02, high=0.05), _success(name="recall", p=1e-3, low=-0.06, high=-0.01)
    verdict, summary = decide(_test(), _results(better, worse), now=NOW)
    assert verdict == NO_DIFFERENCE and "better on accuracy but worse on recall" in summary


def test_a_guardrail_that_fails_its_margin_or_has_no_data_holds_b_back_until_the_end():
    better = _success(p=1e-4, low=0.02, high=0.05)
    for blocking in (_guardrail(passed=False), _guardrail(name="business_impact", passed=None, insufficient=True)):
        assert decide(_test(), _results(better, blocking), now=NOW) is None
        verdict, summary = decide(_test(days_running=30), _results(better, blocking), now=NOW)
        assert verdict == INVALID and f"{blocking['name']} could not be shown within its margin" in summary
    # Too few errors to test (pass null, with data) does not hold B back; nor does one that holds.
    assert decide(_test(), _results(better, _guardrail(passed=None), _guardrail(status=HOLDS)), now=NOW)[0] == B_WINS


@pytest.mark.parametrize("units, note", [((5000, 5100), False), ((300, 280), True)])
def test_at_the_maximum_duration_no_decisive_metric_means_no_difference(units, note):
    assert decide(_test(days_running=29.9), _results(_success(), units=units), now=NOW) is None
    verdict, summary = decide(_test(days_running=30), _results(_success(), units=units), now=NOW)
    assert verdict == NO_DIFFERENCE and "after 30 days no success metric differed" in summary
    assert ("below the 1,000 per arm planned" in summary) == note
