"""Anomalies in a model's operating metrics (latency p95, error rate, throughput, mean prediction, missing
rate): buckets far from what the series' own recent past, or the same phase of earlier seasons, leads one
to expect.

A bucket's score is Iglewicz and Hoaglin's modified z-score, (x - median) / (MAD / 0.6745) ("How to
Detect and Handle Outliers", ASQC 1993; their cutoff, 3.5, is the default threshold), against a baseline
made of earlier buckets only:
- rolling: the median and MAD of the trailing `window` observed values;
- seasonal, once `period` is given, `seasons` whole seasons precede the bucket and `min_history`
  residuals have accrued: the median of the observed values at the same phase in the previous `seasons`
  seasons, with the MAD of the trailing `window` residuals (each value minus its own seasonal median).
  A daily peak is then judged against earlier peaks, and a peak-level value at the trough's hour stands
  out. Before that, and at a phase none of whose previous values was observed, the rolling baseline.
When the MAD is 0 (half the baseline or more equal) the scale is the mean absolute deviation around the
median times sqrt(pi/2), as IBM SPSS's modified z-score does; so in an otherwise constant series a value
seen in fewer than about a quarter of the window's buckets scores past 3.5 each time. No scale is below
a millionth of the expected value's size (and 1e-9): a perfectly flat series scores 0, float rounding is
no change, and a flat series' departure of more than a few millionths of its level is flagged.

Missing buckets (None, NaN) are skipped: never scored, never in a baseline, and no break in a span.
numpy only; tests/unit/test_anomalies.py holds the baselines to numpy's and scipy's own computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ROLLING = "rolling"
SEASONAL = "seasonal"
HIGH = "high"
LOW = "low"

# Phi^-1(3/4), the MAD of a standard normal: dividing by it is scipy.stats.median_abs_deviation's
# scale="normal" to the last bit (multiplying by the rounded 1.4826 would not be).
NORMAL_MAD = 0.6744897501960817
# A normal's mean absolute deviation is sd * sqrt(2/pi); this undoes it.
MEAN_DEVIATION_TO_SD = math.sqrt(math.pi / 2)
# The smallest scale, relative to the expected value and absolute: differences below it are rounding.
RELATIVE_FLOOR = 1e-6
ABSOLUTE_FLOOR = 1e-9


@dataclass(frozen=True)
class Scores:
    """Every bucket's baseline and score, in input order; NaN (baseline None) where there is no verdict:
    a missing bucket, or one with fewer than `min_history` observed values before it."""
    value: np.ndarray  # the input as floats, NaN for missing
    expected: np.ndarray
    scale: np.ndarray
    score: np.ndarray  # (value - expected) / scale
    baseline: tuple[str | None, ...]  # ROLLING or SEASONAL


@dataclass(frozen=True)
class Point:
    index: int  # the bucket's position in the input
    value: float
    expected: float
    scale: float
    score: float
    direction: str  # HIGH or LOW
    baseline: str  # ROLLING or SEASONAL


@dataclass(frozen=True)
class Span:
    """Flagged points in a row, all in one direction; missing buckets between them do not end a span."""
    start: int
    end: int  # inclusive
    points: tuple[Point, ...]
    peak_index: int
    peak_score: float  # the largest |score|, with its sign
    direction: str


@dataclass(frozen=True)
class Anomalies:
    points: tuple[Point, ...]
    spans: tuple[Span, ...]


def score(values: Sequence[float | None], *, period: int | None = None, window: int = 24,
          min_history: int = 12, seasons: int = 3, min_scale: float = 0.0) -> Scores:
    """Each bucket's expected value, scale and modified z-score, against the baseline detect() describes."""
    if window < 2 or min_history < 2:
        raise ValueError("window and min_history must be at least 2: a spread needs two values")
    if period is not None and period < 2:
        raise ValueError("period must be at least 2 buckets")
    if seasons < 1:
        raise ValueError("seasons must be at least 1")
    x = np.array([math.nan if value is None else value for value in values], dtype=float)
    if x.ndim != 1 or np.isinf(x).any():
        raise ValueError("values must be a sequence of finite numbers, None or NaN")
    expected, scale = np.full(len(x), math.nan), np.full(len(x), math.nan)
    baseline: list[str | None] = [None] * len(x)

    observed = np.flatnonzero(~np.isnan(x))
    scored = observed[min_history:]
    expected[scored], scale[scored] = _trailing(x[observed], window, min_history)
    for index in scored:
        baseline[index] = ROLLING

    if period is not None and len(x) > seasons * period:
        seasonal = _seasonal_median(x, period, seasons)
        residual = x - seasonal
        # A bucket with a residual has at least as many observed values before it as residuals, so it
        # was scored above: the seasonal baseline replaces the rolling one there.
        with_residual = np.flatnonzero(~np.isnan(residual))
        scored = with_residual[min_history:]
        expected[scored] = seasonal[scored]
        scale[scored] = _trailing(residual[with_residual], window, min_history)[1]
        for index in scored:
            baseline[index] = SEASONAL

    scale = np.maximum(scale, np.maximum(max(ABSOLUTE_FLOOR, min_scale), RELATIVE_FLOOR * np.abs(expected)))
    return Scores(value=x, expected=expected, scale=scale, score=(x - expected) / scale,
                  baseline=tuple(baseline))


def detect(values: Sequence[float | None], *, period: int | None = None, window: int = 24,
           min_history: int = 12, threshold: float = 3.5, seasons: int = 3, min_scale: float = 0.0) -> Anomalies:
    """The buckets whose |score| exceeds `threshold`, and the spans they make.

    period: the season's length in buckets (24 for hourly buckets in a daily cycle, 7 for daily ones in
        a weekly one); None: the rolling baseline only.
    window: how many trailing observed values (seasonal: residuals) make a baseline.
    min_history: no verdict on a bucket with fewer observed values (seasonal: residuals) before it;
        until then a seasonal bucket is judged by the rolling baseline.
    seasons: how many previous seasons' same-phase values make the seasonal median; a phase needs one
        of them observed.
    threshold: the modified z-score beyond which a bucket is anomalous (Iglewicz and Hoaglin's 3.5).
    min_scale: the smallest scale, in the series' units: a change of less than threshold * min_scale is
        never anomalous (one error in an hour of a model that never fails, say)."""
    if not threshold > 0:
        raise ValueError("threshold must be positive")
    scores = score(values, period=period, window=window, min_history=min_history, seasons=seasons,
                   min_scale=min_scale)
    flagged = np.flatnonzero(np.abs(np.nan_to_num(scores.score)) > threshold)
    points = tuple(Point(index=int(index), value=float(scores.value[index]), expected=float(scores.expected[index]),
                         scale=float(scores.scale[index]), score=float(scores.score[index]),
                         direction=HIGH if scores.score[index] > 0 else LOW, baseline=scores.baseline[index])
                   for index in flagged)
    # Each observed bucket's ordinal: flagged points are in a row when their ordinals are consecutive.
    ordinal = np.cumsum(~np.isnan(scores.value))
    spans: list[list[Point]] = []
    for point in points:
        previous = spans[-1][-1] if spans else None
        if previous is not None and previous.direction == point.direction and \
                ordinal[point.index] - ordinal[previous.index] == 1:
            spans[-1].append(point)
        else:
            spans.append([point])
    return Anomalies(points=points, spans=tuple(_span(run) for run in spans))


def _trailing(series: np.ndarray, window: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """For each position k from `first` on: the median of series[k - window:k] (fewer values while k <
    window) and its scale, the normal-scaled MAD or, when that is 0, the scaled mean absolute deviation."""
    # Row k of the frames holds series[k - window:k], NaN-padded before the start; nan-aware reductions
    # then treat the short early windows and the full ones alike, all rows at once.
    frames = sliding_window_view(np.concatenate([np.full(window, math.nan), series]), window)[first:len(series)]
    median = np.nanmedian(frames, axis=1)
    deviation = np.abs(frames - median[:, None])
    mad = np.nanmedian(deviation, axis=1) / NORMAL_MAD
    return median, np.where(mad > 0, mad, np.nanmean(deviation, axis=1) * MEAN_DEVIATION_TO_SD)


def _seasonal_median(x: np.ndarray, period: int, seasons: int) -> np.ndarray:
    """Each bucket's median of its observed same-phase values in the previous `seasons` seasons; NaN
    before `seasons` whole seasons, or when none of them was observed."""
    start = seasons * period
    same_phase = np.stack([x[start - back * period:len(x) - back * period] for back in range(1, seasons + 1)],
                          axis=1)
    any_observed = ~np.isnan(same_phase).all(axis=1)
    median = np.full(len(x), math.nan)
    median[start:][any_observed] = np.nanmedian(same_phase[any_observed], axis=1)
    return median


def _span(points: list[Point]) -> Span:
    peak = max(points, key=lambda point: abs(point.score))
    return Span(start=points[0].index, end=points[-1].index, points=tuple(points), peak_index=peak.index,
                peak_score=peak.score, direction=peak.direction)
