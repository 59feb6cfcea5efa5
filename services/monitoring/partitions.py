"""Monitoring's data by age: the predictions table's days, and what is older than the retention.

On Postgres the predictions table is partitioned by `day` (the UTC day of the prediction): a row whose
day has no partition lands in the default partition, so no write ever fails for want of one. Beat's
maintenance (`keep_days`, hourly) gives yesterday, today and the next DAYS_AHEAD days their own
partitions before most of their rows arrive, moving any rows the default partition already holds for
them (after the migration, all of them) into theirs, and drops the partitions older than the retention
whole, which is what partitioning is for: no row-by-row delete of millions of rows. On SQLite the old
rows are deleted. Older actuals, recorded metrics, drift reports, detected anomalies, hours' tallies and
A/B tests' looks go too (a running test's latest look is never that old).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.tables import (
    ABTestLook, Actual, DetectedAnomaly, DriftReport, PerformanceHour, Prediction, RecordedMetric, StaleHour,
)

TABLE = Prediction.__table__.name
DEFAULT_PARTITION = f"{TABLE}_default"
# Days made ahead of today: a clock slightly ahead, or a day's first records, find theirs ready.
DAYS_AHEAD = 2
# Serialises maintenance runs (two beats, a run still going an hour later): any fixed number of ours.
LOCK = 0x6D6F6E70  # "monp"


@dataclass
class Kept:
    """What a maintenance run did."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)


def partition_name(day: date) -> str:
    return f"{TABLE}_{day:%Y%m%d}"


def keep_days(session: Session, *, retention_days: int, today: date) -> Kept:
    """Partitions for the coming days and those the default holds; nothing older than `retention_days`."""
    kept = Kept()
    cutoff = today - timedelta(days=retention_days)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": LOCK})
        existing = day_partitions(session)
        waiting = session.scalars(sa.text(f"SELECT DISTINCT day FROM ONLY {DEFAULT_PARTITION} WHERE day >= :cutoff"),
                                  {"cutoff": cutoff}).all()
        wanted = {today + timedelta(days=offset) for offset in range(-1, DAYS_AHEAD + 1)} | set(waiting)
        for day in sorted(day for day in wanted if day >= cutoff and day not in existing):
            _create(session, day)
            kept.created.append(partition_name(day))
        for day, name in sorted(existing.items()):
            if day < cutoff:
                session.execute(sa.text(f'DROP TABLE "{name}"'))
                kept.dropped.append(name)
        predictions = session.execute(sa.text(f"DELETE FROM {DEFAULT_PARTITION} WHERE day < :cutoff"),
                                      {"cutoff": cutoff}).rowcount
    else:
        predictions = session.execute(sa.delete(Prediction).where(Prediction.day < cutoff)).rowcount
    kept.deleted["predictions"] = predictions
    since = datetime.combine(cutoff, time(), timezone.utc)
    for table, moment in ((Actual, Actual.recorded_at), (RecordedMetric, RecordedMetric.measured_at),
                          (DriftReport, DriftReport.computed_at), (DetectedAnomaly, DetectedAnomaly.bucket_start),
                          (PerformanceHour, PerformanceHour.hour), (StaleHour, StaleHour.hour),
                          (ABTestLook, ABTestLook.looked_at)):
        kept.deleted[table.__tablename__] = session.execute(sa.delete(table).where(moment < since)).rowcount
    return kept


def day_partitions(session: Session) -> dict[date, str]:
    """The predictions table's partitions of one day each, by day (Postgres)."""
    names = session.scalars(sa.text(
        "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
        "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent WHERE parent.relname = :table"),
        {"table": TABLE}).all()
    prefix = f"{TABLE}_"
    return {datetime.strptime(name[len(prefix):], "%Y%m%d").date(): name for name in names
            if name != DEFAULT_PARTITION}


def _create(session: Session, day: date) -> None:
    """The day's partition, with the rows the default partition holds for it: built apart, filled, then
    attached (attaching checks that the default partition holds none of its rows any more)."""
    name = partition_name(day)
    session.execute(sa.text(f'CREATE TABLE "{name}" (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'))
    session.execute(sa.text(f'WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE day = :day RETURNING *) '
                            f'INSERT INTO "{name}" SELECT * FROM moved'), {"day": day})
    # DDL takes no parameters: the bounds as literals (dates, which print as nothing but digits and dashes).
    session.execute(sa.text(f"ALTER TABLE {TABLE} ATTACH PARTITION \"{name}\" "
                            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"))
