"""Anomalies in operating metrics: the baselines held to numpy's median and scipy's MAD on the same
trailing values (to 1e-12), and on generated series the flagged buckets exactly the ones made abnormal.

The generated noise is uniform and seeded. At the default window a baseline's MAD comes from 24 values
and is a rough estimate, so pure noise does cross 3.5 now and then (about 1 bucket in 130 for normal
noise); each seed below was checked to give a clean series no flag, which the tests assert exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from services.monitoring.anomalies import Anomalies, detect, score

TOLERANCE = 1e-12


def _noise(seed: int, size: int) -> np.ndarray:
    return 100 + np.random.default_rng(seed).uniform(-1, 1, size)


def _flagged(result: Anomalies) -> list[tuple[int, str]]:
    return [(point.index, point.direction) for point in result.points]


def _spans(result: Anomalies) -> list[tuple[int, int, str]]:
    return [(span.start, span.end, span.direction) for span in result.spans]


def test_the_rolling_baseline_is_the_median_and_normal_mad_of_the_trailing_observed_values():
    values: list[float | None] = np.random.default_rng(1).gamma(2.0, 3.0, 90).tolist()
    values[20] = values[31] = values[32] = None
    scores = score(values)
    for index in (12, 19, 21, 23, 30, 33, 50, 89):  # short windows, across missing buckets, full ones
        trailing = [value for value in values[:index] if value is not None][-24:]
        assert scores.baseline[index] == "rolling"
        assert scores.expected[index] == pytest.approx(np.median(trailing), abs=TOLERANCE)
        assert scores.scale[index] == pytest.approx(stats.median_abs_deviation(trailing, scale="normal"),
                                                    abs=TOLERANCE)
        assert scores.score[index] == pytest.approx((values[index] - np.median(trailing)) / scores.scale[index],
                                                    abs=TOLERANCE)


def test_the_seasonal_baseline_is_the_same_phase_median_and_the_normal_mad_of_trailing_residuals():
    hours = np.arange(200)
    values = 10 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(2).normal(0, 1, 200)
    seasonal = {j: np.median([values[j - 24], values[j - 48], values[j - 72]]) for j in range(72, 200)}
    scores = score(values.tolist(), period=24)
    for index in (84, 100, 150, 199):
        residuals = [values[j] - seasonal[j] for j in range(72, index)][-24:]
        assert scores.baseline[index] == "seasonal"
        assert scores.expected[index] == pytest.approx(seasonal[index], abs=TOLERANCE)
        assert scores.scale[index] == pytest.approx(stats.median_abs_deviation(residuals, scale="normal"),
                                                    abs=TOLERANCE)


def test_injected_spikes_are_flagged_exactly_with_their_direction_and_clean_noise_is_not():
    values = _noise(4, 300)
    assert detect(values.tolist()) == Anomalies(points=(), spans=())
    values[[40, 130, 200, 201]] += [8.0, -8.0, 8.0, 8.0]
    result = detect(values.tolist())
    assert _flagged(result) == [(40, "high"), (130, "low"), (200, "high"), (201, "high")]
    assert _spans(result) == [(40, 40, "high"), (130, 130, "low"), (200, 201, "high")]
    assert result.spans[2].points == result.points[2:]


def test_a_direction_change_inside_a_run_starts_a_new_span():
    values = _noise(4, 300)
    values[[100, 101]] += [8.0, -8.0]
    assert _spans(detect(values.tolist())) == [(100, 100, "high"), (101, 101, "low")]


def test_a_level_shift_is_a_span_from_the_shift_until_it_fills_half_the_window():
    values = _noise(4, 250)
    assert detect(values.tolist()).points == ()
    values[100:] += 10.0
    result = detect(values.tolist())
    # From the 13th shifted value on, the shifted values are the trailing median's majority: the new normal.
    assert _spans(result) == [(100, 111, "high")]
    span = result.spans[0]
    assert span.peak_score == max(point.score for point in span.points) > 20
    assert span.points[-1].score < span.points[0].score  # fading as the shifted values fill the window
    assert span.peak_index == next(point.index for point in span.points if point.score == span.peak_score)


def test_with_the_period_daily_peaks_are_normal_and_a_peak_level_value_at_the_trough_is_not():
    hours = np.arange(240)  # 10 days, hourly
    values = 10 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(5).uniform(-0.3, 0.3, 240)
    assert detect(values.tolist(), period=24).points == ()
    trough = 8 * 24 + 18  # sin is -1 at hour 18 of each day
    values[trough] = values[trough - 12]  # the same day's peak
    result = detect(values.tolist(), period=24)
    assert _flagged(result) == [(trough, "high")] and result.points[0].baseline == "seasonal"
    assert result.points[0].expected == pytest.approx(-10, abs=0.3)
    # Without the period the value is ordinary: the last 24 hours held values as high.
    assert detect(values.tolist()).points == ()


def test_the_seasonal_baseline_starts_once_three_seasons_and_min_history_residuals_precede():
    hours = np.arange(240)
    values = 10 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(5).uniform(-0.3, 0.3, 240)
    assert score(values.tolist(), period=24).baseline == (None,) * 12 + ("rolling",) * 72 + ("seasonal",) * 156


def test_missing_buckets_are_never_flagged_and_do_not_break_a_span():
    values: list[float | None] = _noise(4, 300).tolist()
    values[60], values[61], values[62] = 108.0, None, 108.5
    values[150], values[151] = float("nan"), None
    result = detect(values)
    scores = score(values)
    assert _spans(result) == [(60, 62, "high")] and [point.index for point in result.points] == [60, 62]
    assert all(math.isnan(scores.score[index]) and scores.baseline[index] is None for index in (61, 150, 151))


def test_missing_buckets_do_not_count_towards_min_history():
    values: list[float | None] = _noise(4, 12).tolist() + [120.0]
    assert _flagged(detect(values)) == [(12, "high")]
    assert detect(values[:11] + [120.0]).points == ()
    assert detect(values[:5] + [None] + values[5:11] + [120.0]).points == ()  # 11 observed before it


def test_a_flat_series_flags_its_one_spike_and_nothing_when_perfectly_flat():
    assert _flagged(detect([5.0] * 30 + [6.0] + [5.0] * 20)) == [(30, "high")]
    assert _flagged(detect([0.0] * 30 + [0.001] + [0.0] * 20)) == [(30, "high")]
    assert _flagged(detect([5.0] * 30 + [4.9] + [5.0] * 20)) == [(30, "low")]
    assert detect([5.0] * 50) == Anomalies(points=(), spans=())
    assert detect([0.3] * 30 + [0.1 + 0.2] + [0.3] * 20).points == ()  # 0.30000000000000004: rounding, no change


def test_when_most_of_the_window_is_equal_the_scale_is_the_scaled_mean_absolute_deviation():
    error_rate = [0.0, 0.01, 0.0, 0.02, 0.0] * 5 + [0.05]  # zero in 3 buckets of 5: the MAD is 0
    window = np.array(error_rate[1:25])
    assert stats.median_abs_deviation(window) == 0
    scale = math.sqrt(math.pi / 2) * np.mean(np.abs(window - np.median(window)))
    assert score(error_rate).scale[25] == pytest.approx(scale, abs=TOLERANCE)
    assert _flagged(detect(error_rate)) == [(25, "high")]  # the usual 0.01 and 0.02 are not flagged


def test_a_phase_whose_previous_seasons_are_all_missing_is_judged_by_the_rolling_baseline():
    hours = np.arange(240)
    values: list[float | None] = (10 * np.sin(2 * np.pi * hours / 24)
                                  + np.random.default_rng(5).uniform(-0.3, 0.3, 240)).tolist()
    for index in (6, 30, 54, 126):
        values[index] = None
    baseline = score(values, period=24).baseline
    assert (baseline[78], baseline[102], baseline[150]) == ("rolling", "seasonal", "seasonal")


@pytest.mark.parametrize("values, settings", [
    ([1.0] * 30, {"window": 1}),
    ([1.0] * 30, {"min_history": 1}),
    ([1.0] * 30, {"threshold": 0}),
    ([1.0] * 30, {"threshold": -3.5}),
    ([1.0] * 30, {"threshold": float("nan")}),
    ([1.0] * 30, {"period": 1}),
    ([1.0] * 30, {"period": 24, "seasons": 0}),
    ([1.0] * 29 + [float("inf")], {}),
])
def test_bad_arguments_are_refused(values, settings):
    with pytest.raises(ValueError):
        detect(values, **settings)


def test_a_change_below_the_minimum_scale_is_never_anomalous():
    # A model that never fails, then one error in a hundred: the floor of a flat series flags it...
    rates = [0.0] * 30 + [0.01] + [0.0] * 5 + [0.2]
    assert [point.index for point in detect(rates).points] == [30, 36]
    # ...a minimum scale of 1 point keeps the small one quiet and still flags 20 points.
    assert [point.index for point in detect(rates, min_scale=0.01).points] == [36]
    assert score(rates, min_scale=0.01).scale[36] == 0.01
