"""How a model has done over the last days: its predictions joined with their actuals, by the hour or day.

Each prediction falls in the bucket of the time it was made, and its actual is joined at read time, so
an actual that arrives days later changes the bucket of its prediction, not the bucket of its arrival.
Scores (scores.py) count the predictions that have an actual and did not fail; latency percentiles,
throughput (predictions per second) and the error rate count them all. Metrics recorded through the
metrics API are averaged per bucket beside them, by the time they measure.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring import scores
from services.monitoring.tables import Actual, Prediction, RecordedMetric
from shared.registry_client import RegistryClient

BUCKET_SECONDS = {"hour": 3600, "day": 86400}


def _utc(moment: datetime) -> datetime:
    # SQLite hands back the UTC wall clock without its zone.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _figures(rows: list, seconds: float, model_type: str) -> dict[str, Any]:
    count = len(rows)
    errors = sum(1 for row in rows if row.error is not None)
    latencies = [row.latency_ms for row in rows if row.latency_ms is not None]
    figures: dict[str, Any] = {
        "predictions": count, "errors": errors, "error_rate": errors / count if count else None,
        "throughput": count / seconds,
        "latency_p50_ms": scores.percentile(latencies, 50), "latency_p95_ms": scores.percentile(latencies, 95),
        "latency_p99_ms": scores.percentile(latencies, 99),
    }
    labeled = [row for row in rows if row.actual is not None and row.error is None]
    predicted = [scores.value_of(row.prediction, "prediction") for row in labeled]
    actual = [scores.value_of(row.actual, "actual") for row in labeled]
    if model_type == "classification":
        figures["with_actuals"] = len(labeled)
        labels_and_scores = [scores.label_and_score(value, row.probabilities) for value, row in zip(predicted, labeled)]
        figures.update(scores.classification([label for label, _ in labels_and_scores], actual,
                                             [score for _, score in labels_and_scores]))
    elif model_type in scores.NUMERIC_TYPES:
        pairs = [(p, a) for p, a in zip(map(scores.number, predicted), map(scores.number, actual)) if p is not None and a is not None]
        figures["with_actuals"] = len(pairs)
        figures.update(scores.regression([p for p, _ in pairs], [a for _, a in pairs]))
    return figures


def _means(values: Iterable[tuple[str, float]]) -> dict[str, float]:
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, value in values:
        by_name[name].append(value)
    return {name: math.fsum(found) / len(found) for name, found in sorted(by_name.items())}


def model_performance(*, session: Session, registry: RegistryClient, model_ref: str, days: int, version: int | None,
                      granularity: str, now: datetime) -> dict[str, Any]:
    model = registry.model(model_ref)
    model_id = uuid.UUID(model["id"])
    since = now - timedelta(days=days)
    predictions = sa.select(Prediction.predicted_at, Prediction.version, Prediction.prediction, Prediction.probabilities,
                            Prediction.latency_ms, Prediction.error, Actual.actual).outerjoin(
        Actual, sa.and_(Actual.model_id == Prediction.model_id, Actual.request_id == Prediction.request_id)).where(
        Prediction.model_id == model_id, Prediction.predicted_at >= since)
    recorded = sa.select(RecordedMetric.measured_at, RecordedMetric.version, RecordedMetric.name,
                         RecordedMetric.value).where(RecordedMetric.model_id == model_id,
                                                     RecordedMetric.measured_at >= since)
    if version is not None:
        predictions = predictions.where(Prediction.version == version)
        recorded = recorded.where(RecordedMetric.version == version)
    rows = session.execute(predictions).all()
    metrics = session.execute(recorded).all()

    width = BUCKET_SECONDS[granularity]

    def bucket(moment: datetime) -> int:
        return math.floor(_utc(moment).timestamp() / width) * width

    rows_by_bucket: dict[int, list] = defaultdict(list)
    for row in rows:
        rows_by_bucket[bucket(row.predicted_at)].append(row)
    metrics_by_bucket: dict[int, list] = defaultdict(list)
    for metric in metrics:
        metrics_by_bucket[bucket(metric.measured_at)].append((metric.name, metric.value))
    series = [{"start": datetime.fromtimestamp(start, timezone.utc).isoformat(),
               **_figures(rows_by_bucket.get(start, []), width, model["type"]),
               "metrics": _means(metrics_by_bucket.get(start, []))}
              for start in sorted(rows_by_bucket.keys() | metrics_by_bucket.keys())]
    versions = sorted({row.version for row in rows})
    return {
        "model_id": model["id"], "type": model["type"], "days": days, "granularity": granularity, "version": version,
        "since": since.isoformat(), "until": now.isoformat(),
        "summary": {**_figures(rows, days * 86400, model["type"]),
                    "metrics": _means((metric.name, metric.value) for metric in metrics)},
        "by_version": {str(number): _figures([row for row in rows if row.version == number], days * 86400,
                                             model["type"]) for number in versions},
        "series": series,
    }
