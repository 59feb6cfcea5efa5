"""Each model's predictions tallied per version and UTC hour (tables.PerformanceHour), so that a month
of performance reads a few hundred rows rather than millions of predictions.

An hour's tallies are recomputed from its rows and their actuals whenever either changed, rather than
added to: every figure is then exactly what the rows say, whatever order predictions and actuals
arrive in and however often an actual is corrected. Storing predictions marks their hours stale
(stale.py), and so does storing actuals, for the hours of the predictions they join. Beat
refreshes the stale hours every minute (`refresh`); a read (`hourly_tallies`) tallies its window's
stale hours from their rows itself, so it never answers from a stale tally and never writes.

A refresh recomputes a whole hour, so the hour being written is recomputed on every run, and so is it
by every read meanwhile: cheap at the issue's scale (10 million predictions a month are ~14,000 an
hour, tallied in 35-80 ms, 70-155 ms with their features' missing values, on 2 cores shared with
other work) and growing with the rows an hour holds. Each stale hour is a query of its own: ~2 ms besides its rows,
and a read seldom finds more than the hour being written stale.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring import ab_hours
from services.monitoring.joined import joined, parsed
from services.monitoring.stale import hour_of
from services.monitoring.tables import Actual, PerformanceHour, Prediction, StaleHour, VersionBaseline
from services.monitoring.tally import Columns, Tally, tally

# Serialises refreshes (two beats, a run still going a minute later): any fixed number of ours.
LOCK = 0x6D6F6E72  # "monr"
HOUR = timedelta(hours=1)


def refresh(session: Session, *, hours: int) -> int:
    """Recompute up to `hours` stale hours' tallies, the oldest marks first; how many were recomputed.
    An hour of a model whose type monitoring does not know yet (its version's registration on the way)
    stays stale."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": LOCK})
    # The type of each model that has one (every version of a model has the model's).
    typed = (sa.select(VersionBaseline.model_id, sa.func.max(VersionBaseline.model_type).label("model_type"))
             .where(VersionBaseline.model_type.is_not(None)).group_by(VersionBaseline.model_id).subquery())
    stale = session.execute(sa.select(StaleHour.model_id, StaleHour.hour, sa.func.max(StaleHour.id), typed.c.model_type)
                            .join(typed, typed.c.model_id == StaleHour.model_id)
                            .group_by(StaleHour.model_id, StaleHour.hour, typed.c.model_type)
                            .order_by(sa.func.min(StaleHour.id)).limit(hours)).all()
    for model_id, hour, last_mark, model_type in stale:
        hour = hour_of(hour)
        session.execute(sa.delete(PerformanceHour).where(PerformanceHour.model_id == model_id,
                                                         PerformanceHour.hour == hour))
        session.add_all(PerformanceHour(model_id=model_id, hour=hour, version=version, **found.columns())
                        for (version, _), found in _tallied(session, model_id, [hour], model_type).items())
        # The marks read, not any made since: their rows may have come after this hour's were read.
        session.execute(sa.delete(StaleHour).where(StaleHour.model_id == model_id, StaleHour.hour == hour,
                                                   StaleHour.id <= last_mark))
    # The A/B tests that keep these models' hours recompute them too (ab_hours.py): their marks, in this transaction.
    ab_hours.note_changes(session, [(model_id, hour_of(hour)) for model_id, hour, _, _ in stale])
    return len(stale)


def hourly_tallies(session: Session, model_id: uuid.UUID, *, since: datetime, version: int | None,
                   model_type: str | None, features: bool,
                   until: datetime | None = None) -> dict[tuple[int, datetime], Tally]:
    """The model's tallies per (version, hour) from the hour of `since` on (before `until`, a top of the hour,
    when given): stored ones, and those of the hours still stale tallied from their rows, with their features'
    missing values if `features` (the largest column, which only the operating metrics need)."""
    since = hour_of(since)
    stale_hours = sa.select(StaleHour.hour).distinct().where(StaleHour.model_id == model_id, StaleHour.hour >= since)
    # Rows, not ORM objects: a month of hours is hundreds of them, and each object costs.
    stored = sa.select(*PerformanceHour.__table__.columns).where(PerformanceHour.model_id == model_id,
                                                                 PerformanceHour.hour >= since)
    if until is not None:
        stale_hours, stored = stale_hours.where(StaleHour.hour < until), stored.where(PerformanceHour.hour < until)
    stale = set(map(hour_of, session.scalars(stale_hours)))
    if version is not None:
        stored = stored.where(PerformanceHour.version == version)
    found = {}
    for row in session.execute(stored):
        hour = hour_of(row.hour)
        if hour not in stale:
            found[row.version, hour] = Tally.from_columns(row)
    found.update(_tallied(session, model_id, sorted(stale), model_type, version=version, features=features))
    return found


def _tallied(session: Session, model_id: uuid.UUID, hours: list[datetime], model_type: str | None,
             version: int | None = None, features: bool = True) -> dict[tuple[int, datetime], Tally]:
    """The tallies per (version, hour) of `hours`' prediction rows and their actuals: each column of a
    version's hour read as one text (joined.py), those the scores read without the failed predictions."""
    found = {}
    succeeded = Prediction.error.is_(None)
    for hour in hours:
        query = sa.select(
            Prediction.version, sa.func.count(), sa.func.count(Prediction.error),
            joined(Prediction.latency_ms).filter(Prediction.latency_ms.is_not(None)),
            joined(Prediction.features).filter(Prediction.features.is_not(None)) if features else sa.null(),
            *(joined(column).filter(succeeded) for column in (Prediction.prediction, Prediction.probabilities,
                                                              Actual.actual)),
        ).outerjoin(
            Actual, sa.and_(Actual.model_id == Prediction.model_id, Actual.request_id == Prediction.request_id)).where(
            # The day too: Postgres then reads that day's partition alone.
            Prediction.model_id == model_id, Prediction.day == hour.date(), Prediction.predicted_at >= hour,
            Prediction.predicted_at < hour + HOUR).group_by(Prediction.version)
        if version is not None:
            query = query.where(Prediction.version == version)
        for number, predictions, errors, *texts in session.execute(query):
            found[number, hour] = tally(Columns(predictions, errors, *map(parsed, texts)), model_type)
    return found
