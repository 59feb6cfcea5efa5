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

from services.monitoring import anomalies, scores
from services.monitoring.performance import BUCKET_SECONDS
from services.monitoring.tables import DetectedAnomaly, Prediction
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
    """The whole buckets of the last `days` up to `now`, and each metric's value per bucket."""
    width = BUCKET_SECONDS[granularity]
    end = math.floor(now.timestamp() / width) * width  # the bucket in progress starts here: left out
    first = end - days * 86400
    query = sa.select(Prediction.predicted_at, Prediction.prediction, Prediction.probabilities,
                      Prediction.latency_ms, Prediction.error, Prediction.features).where(
        Prediction.model_id == model_id, Prediction.predicted_at >= datetime.fromtimestamp(first, timezone.utc),
        Prediction.predicted_at < datetime.fromtimestamp(end, timezone.utc))
    if version is not None:
        query = query.where(Prediction.version == version)
    buckets: list[list] = [[] for _ in range((end - first) // width)]
    for row in session.execute(query):
        moment = row.predicted_at if row.predicted_at.tzinfo else row.predicted_at.replace(tzinfo=timezone.utc)
        buckets[int((moment.timestamp() - first) // width)].append(row)
    starts = [datetime.fromtimestamp(first + index * width, timezone.utc) for index in range(len(buckets))]
    series: dict[str, list[float | None]] = {name: [] for name in METRICS}
    serving = False
    for rows in buckets:
        serving = serving or bool(rows)
        for name, value in _bucket_metrics(rows, width).items():
            series[name].append(value if serving else None)
    return starts, series


def _bucket_metrics(rows: list, width: int) -> dict[str, float | None]:
    latencies = [row.latency_ms for row in rows if row.latency_ms is not None]
    outputs = [scores.number(_output(row)) for row in rows if row.error is None]
    outputs = [value for value in outputs if value is not None]
    values = [value for row in rows if isinstance(row.features, dict) for value in row.features.values()]
    return {
        "latency_p95_ms": scores.percentile(latencies, 95),
        "error_rate": sum(row.error is not None for row in rows) / len(rows) if rows else None,
        "throughput": len(rows) / width,
        "mean_prediction": _mean(outputs),
        "missing_rate": sum(value is None for value in values) / len(values) if values else None,
    }


def _mean(values: list[float]) -> float | None:
    """The mean; None for none, or for numbers whose sum overflows a float (no baseline can use it)."""
    try:
        return math.fsum(values) / len(values) if values else None
    except OverflowError:
        return None


def _output(row) -> Any:
    """A prediction as one number: a classifier's positive-class score when it has one, else its value."""
    label, score = scores.label_and_score(scores.value_of(row.prediction, "prediction"), row.probabilities)
    return score if score is not None else label


def models_to_sweep(session: Session, *, now: datetime) -> list[str]:
    """Models with predictions in the week before the last whole hour ended: their last hour is judged,
    also when it had none (an outage is the clearest fall of throughput)."""
    end = datetime.fromtimestamp(math.floor(now.timestamp() / 3600) * 3600, timezone.utc)
    rows = session.scalars(sa.select(Prediction.model_id).where(
        Prediction.predicted_at >= end - timedelta(days=SWEEP_DAYS), Prediction.predicted_at < end).distinct())
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
