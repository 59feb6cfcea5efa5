"""How a model has done over the last days: its predictions joined with their actuals, by the hour or day.

Each prediction counts in the bucket of the time it was made, and its actual with it, so an actual that
arrives days later changes the bucket of its prediction, not the bucket of its arrival. The figures come
from the model's hourly tallies (rollups.py), the window starting at the top of the hour `days` ago.
Scores count the predictions that have an actual and did not fail; latency percentiles (within 1% of
the exact ones: tally.py), throughput (predictions per second) and the error rate count them all.
Metrics recorded through the metrics API are averaged per bucket beside them, by the time they measure.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.rollups import hourly_tallies
from services.monitoring.stale import hour_of
from services.monitoring.tables import RecordedMetric
from services.monitoring.tally import Tally
from shared.registry_client import RegistryClient

BUCKET_SECONDS = {"hour": 3600, "day": 86400}


def _utc(moment: datetime) -> datetime:
    # SQLite hands back the UTC wall clock without its zone.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _means(values: Iterable[tuple[str, float]]) -> dict[str, float]:
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, value in values:
        by_name[name].append(value)
    return {name: math.fsum(found) / len(found) for name, found in sorted(by_name.items())}


def _merged(tallies: Iterable[Tally]) -> Tally:
    merged = Tally()
    for found in tallies:
        merged.add(found)
    return merged


def model_performance(*, session: Session, registry: RegistryClient, model_ref: str, days: int, version: int | None,
                      granularity: str, now: datetime) -> dict[str, Any]:
    model = registry.model(model_ref)
    model_id, model_type = uuid.UUID(model["id"]), model["type"]
    since = hour_of(now - timedelta(days=days))
    recorded = sa.select(RecordedMetric.measured_at, RecordedMetric.name, RecordedMetric.value).where(
        RecordedMetric.model_id == model_id, RecordedMetric.measured_at >= since)
    if version is not None:
        recorded = recorded.where(RecordedMetric.version == version)
    metrics = session.execute(recorded).all()
    width = BUCKET_SECONDS[granularity]

    def bucket(moment: datetime) -> int:
        return math.floor(_utc(moment).timestamp() / width) * width

    # Merged per (version, bucket) first: the summary, each version and each bucket are then sums of those.
    by_version_and_bucket: dict[tuple[int, int], Tally] = defaultdict(Tally)
    for (number, hour), found in hourly_tallies(session, model_id, since=since, version=version,
                                                model_type=model_type, features=False).items():
        by_version_and_bucket[number, bucket(hour)].add(found)
    by_version: dict[int, list[Tally]] = defaultdict(list)
    by_bucket: dict[int, list[Tally]] = defaultdict(list)
    for (number, start), found in by_version_and_bucket.items():
        by_version[number].append(found)
        by_bucket[start].append(found)
    versions = {number: _merged(found) for number, found in sorted(by_version.items())}
    metrics_by_bucket: dict[int, list] = defaultdict(list)
    for metric in metrics:
        metrics_by_bucket[bucket(metric.measured_at)].append((metric.name, metric.value))
    series = [{"start": datetime.fromtimestamp(start, timezone.utc).isoformat(),
               **_merged(by_bucket.get(start, ())).figures(width, model_type),
               "metrics": _means(metrics_by_bucket.get(start, []))}
              for start in sorted(by_bucket.keys() | metrics_by_bucket.keys())]
    return {
        "model_id": model["id"], "type": model_type, "days": days, "granularity": granularity, "version": version,
        "since": since.isoformat(), "until": now.isoformat(),
        "summary": {**_merged(versions.values()).figures(days * 86400, model_type),
                    "metrics": _means((metric.name, metric.value) for metric in metrics)},
        "by_version": {str(number): found.figures(days * 86400, model_type) for number, found in versions.items()},
        "series": series,
    }
