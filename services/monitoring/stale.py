"""Marking a model's hours stale (tables.StaleHour) when their predictions or the actuals they join
change, for rollups.py to tally them again: apart from it, so that storing predictions loads no more
than it needs.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.tables import Prediction, StaleHour

# Request ids per query when finding the predictions of actuals.
LOOKUP = 1000


def hour_of(moment: datetime) -> datetime:
    """The start of `moment`'s UTC hour (SQLite hands back UTC wall clocks without their zone)."""
    moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.replace(minute=0, second=0, microsecond=0)


def mark_predictions(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """Mark the hours of prediction rows about to be stored stale."""
    # Their times are in UTC already (ingestion.timestamp): truncated in place, without hour_of's
    # conversion per row, on the path of every stored batch.
    _mark(session, {(row["model_id"], row["predicted_at"].replace(minute=0, second=0, microsecond=0))
                    for row in rows})


def mark_actuals(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """Mark the hours of the predictions these actuals rows join stale (an actual before its prediction
    joins nothing yet: storing the prediction marks its hour)."""
    by_model: dict[uuid.UUID, list[str]] = defaultdict(list)
    for row in rows:
        by_model[row["model_id"]].append(row["request_id"])
    hours = set()
    for model_id, request_ids in by_model.items():
        for start in range(0, len(request_ids), LOOKUP):
            found = session.scalars(sa.select(Prediction.predicted_at).where(
                Prediction.model_id == model_id, Prediction.request_id.in_(request_ids[start:start + LOOKUP])))
            hours.update((model_id, hour_of(moment)) for moment in found)
    _mark(session, hours)


def _mark(session: Session, hours: set[tuple[uuid.UUID, datetime]]) -> None:
    if hours:
        session.execute(sa.insert(StaleHour), [{"model_id": model_id, "hour": hour} for model_id, hour in sorted(hours)])
