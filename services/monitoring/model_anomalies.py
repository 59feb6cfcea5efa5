"""A model's operating metrics per hour or day, and the anomalies anomalies.detect finds in them.

The metrics, per bucket of the predictions' time: latency p95 (ms), error rate, throughput (predictions
per second; an hour without predictions is 0, once the model's first prediction in the window came:
a model new this week has no throughput before it, not a week of zeros), mean prediction (a classifier's positive-class score
or numeric label, a regressor's value) and missing rate (the share of feature values missing in the
records that carry features). A bucket with no predictions has no value for the others. Only whole
buckets are judged: the one in progress would look like a fall in throughput.

The seasonal baseline's period is a day for hourly buckets and a week for daily ones, the rolling
window two periods. The default threshold is 5, not Iglewicz and Hoaglin's 3.5: on two weeks of
hourly noise (normal, Poisson counts, binomial error rates, the p95 of six latencies) 3.5 flagged 0.4%
to 1.5% of the buckets, a false alarm or more a day per metric; 5 flags 0.03% to 0.24%. A change
smaller than the metric's own MIN_SCALE times the threshold is never anomalous: 5 ms of latency, 5
points of error or missing rate, 5 predictions a bucket: so a model that never fails does not raise
an anomaly for its first error. Beat's sweep (workers/drift.py) judges each served model's last whole hour
and records each anomaly once (tables.DetectedAnomaly), emitting `anomaly.detected`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring import anomalies
from services.monitoring.performance import BUCKET_SECONDS
from services.monitoring.rollups import hourly_tallies
from services.monitoring.tables import DetectedAnomaly, PerformanceHour, StaleHour
from services.monitoring.tally import Tally
from shared.events.outbox import emit
from shared.registry_client import RegistryClient

PRODUCER = "monitoring"
METRICS = ("latency_p95_ms", "error_rate", "throughput", "mean_prediction", "missing_rate")
PERIOD = {"hour": 24, "day": 7}
THRESHOLD = 5.0
# The smallest scale per metric, in its units (throughput: predictions per bucket, divided by its width).
MIN_SCALE = {"latency_p95_ms": 1.0, "error_rate": 0.01, "throughput": 1.0, "mean_prediction": 0.0,
             "missing_rate": 0.01}
# The days of hourly history the sweep judges the last hour against: three seasons and a week's window.
SWEEP_DAYS = 7


def model_anomalies(*, session: Session, registry: RegistryClient, model_ref: str, days: int, granularity: str,
                    version: int | None, threshold: float, now: datetime) -> dict[str, Any]:
    model = registry.model(model_ref)  # by id or name; NotFound is a 404
    model_id = uuid.UUID(model["id"])
    starts, series = operating_series(session, model_id, version=version, days=days, granularity=granularity, now=now)
    judged = {}
    for name in METRICS:
        found = anomalies.detect(series[name], threshold=threshold, **_options(name, granularity))
        scored = anomalies.score(series[name], **_options(name, granularity))
        judged[name] = {
            "series": [{"start": start.isoformat(), "value": series[name][index],
                        "expected": _finite(scored.expected[index]), "score": _finite(scored.score[index]),
                        "baseline": scored.baseline[index]} for index, start in enumerate(starts)],
            "points": [{**asdict(point), "start": starts[point.index].isoformat()} for point in found.points],
            "spans": [{"start": starts[span.start].isoformat(), "end": starts[span.end].isoformat(),
                       "buckets": span.end - span.start + 1, "peak": starts[span.peak_index].isoformat(),
                       "peak_score": span.peak_score, "direction": span.direction} for span in found.spans],
        }
    return {"model_id": model["id"], "version": version, "days": days, "granularity": granularity,
            "threshold": threshold, "since": starts[0].isoformat() if starts else None,
            "until": (starts[-1] + timedelta(seconds=BUCKET_SECONDS[granularity])).isoformat() if starts else None,
            "metrics": judged}


def _options(metric: str, granularity: str) -> dict[str, Any]:
    scale = MIN_SCALE[metric] / BUCKET_SECONDS[granularity] if metric == "throughput" else MIN_SCALE[metric]
    return {"period": PERIOD[granularity], "window": 2 * PERIOD[granularity], "min_scale": scale}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def operating_series(session: Session, model_id: uuid.UUID, *, version: int | None, days: int, granularity: str,
                     now: datetime) -> tuple[list[datetime], dict[str, list[float | None]]]:
    """The whole buckets of the last `days` up to `now`, and each metric's value per bucket, from the
    model's hourly tallies (rollups.py)."""
    width = BUCKET_SECONDS[granularity]
    end = math.floor(now.timestamp() / width) * width  # the bucket in progress starts here: left out
    first = end - days * 86400
    buckets = [Tally() for _ in range((end - first) // width)]
    # The operating metrics do not depend on the model's type (which only its scores need).
    # Whole buckets only: the hour in progress (often stale, the dearest to tally) is never read.
    for (_, hour), found in hourly_tallies(session, model_id, since=datetime.fromtimestamp(first, timezone.utc),
                                           until=datetime.fromtimestamp(end, timezone.utc), version=version,
                                           model_type=None, features=True).items():
        buckets[int((hour.timestamp() - first) // width)].add(found)
    starts = [datetime.fromtimestamp(first + index * width, timezone.utc) for index in range(len(buckets))]
    series: dict[str, list[float | None]] = {name: [] for name in METRICS}
    serving = False
    for found in buckets:
        serving = serving or found.predictions > 0
        for name, value in _bucket_metrics(found, width).items():
            series[name].append(value if serving else None)
    return starts, series


def _bucket_metrics(found: Tally, width: int) -> dict[str, float | None]:
    return {
        "latency_p95_ms": found.latency_percentiles(95)[0],
        "error_rate": found.errors / found.predictions if found.predictions else None,
        "throughput": found.predictions / width,
        "mean_prediction": found.mean_prediction(),
        "missing_rate": found.missing_rate(),
    }


def models_to_sweep(session: Session, *, now: datetime) -> list[str]:
    """Models with predictions in the week before the last whole hour ended: their last hour is judged,
    also when it had none (an outage is the clearest fall of throughput)."""
    end = datetime.fromtimestamp(math.floor(now.timestamp() / 3600) * 3600, timezone.utc)
    since = end - timedelta(days=SWEEP_DAYS)
    # By their hours, tallied or waiting to be: a few rows an hour, where the predictions are millions.
    rows = session.scalars(sa.union(
        sa.select(PerformanceHour.model_id).where(PerformanceHour.hour >= since, PerformanceHour.hour < end),
        sa.select(StaleHour.model_id).where(StaleHour.hour >= since, StaleHour.hour < end)))
    return sorted(str(model_id) for model_id in rows)


def record_last_hour(session: Session, model_id: uuid.UUID, *, now: datetime) -> int:
    """Judge the model's last whole hour against its past week; record and announce each new anomaly."""
    starts, series = operating_series(session, model_id, version=None, days=SWEEP_DAYS, granularity="hour", now=now)
    recorded = 0
    for name in METRICS:
        last = len(starts) - 1
        found = anomalies.detect(series[name], threshold=THRESHOLD, **_options(name, "hour"))
        point = next((flagged for flagged in found.points if flagged.index == last), None)
        if point is None:
            continue
        key = {"model_id": model_id, "metric": name, "bucket_start": starts[last]}
        if session.scalar(sa.select(DetectedAnomaly.id).filter_by(**key)) is not None:
            continue  # judged before (a redelivered task, or a sweep within the same hour)
        anomaly = DetectedAnomaly(**key, granularity="hour", value=point.value, expected=point.expected,
                                  score=point.score, direction=point.direction, detected_at=now)
        session.add(anomaly)
        session.flush()
        emit(session, "anomaly.detected", {
            "anomaly_id": anomaly.id, "model_id": model_id, "metric": name, "bucket_start": starts[last],
            "granularity": "hour", "value": point.value, "expected": point.expected, "score": point.score,
            "direction": point.direction,
        }, producer=PRODUCER)
        recorded += 1
    return recorded
