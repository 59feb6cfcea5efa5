"""An A/B test's arms' sums kept per hour (tables.ABTestHour) and their units (tables.ABTestUnit), so that a look
reads only the predictions that changed since the last one: a look every 5 minutes at a test of a million
predictions reads a few thousand rows, not the million.

A look recomputes the hours from where the last one stopped (`computed_until`: its hour may have gained rows
since) to now, and the hours whose predictions or actuals changed meanwhile: storing either marks its model's hour
stale (stale.py); the tallies' refresh (rollups.py) consumes those marks every minute, and hands those of the
tested models on to each test as an ABTestStaleHour (`note_changes`, in the refresh's transaction); a look reads
its own marks and the model's marks not consumed yet, and deletes the marks it read once it recomputed their
hours. So every change reaches the next look, however late a prediction or an actual arrives. The kept sums
are a cache of the predictions store: the first look (or one after `computed_until` was reset) computes the
whole window again. A look after the test ended is its last: its units (a row per unit) are dropped then.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring import ab_arms
from services.monitoring.ab_arms import ARMS, ArmSums, Ranges, utc
from services.monitoring.stale import hour_of
from services.monitoring.tables import ABTestAnalysis, ABTestHour, ABTestStaleHour, ABTestUnit, StaleHour

HOUR = timedelta(hours=1)


def arm_sums(session: Session, test: ABTestAnalysis, *, since: datetime, until: datetime) -> dict[str, ArmSums]:
    """Both arms' sums over [since, until): the kept hours', those that changed computed again first. The caller
    holds the test's row (ab_analysis.lock)."""
    ab_arms.tune(session)
    marks: list[int] = []
    if test.computed_until is None:
        forget(session, test.ab_test_id)
        test.units_a = test.units_b = 0
        hours, ranges = None, [(since, until)]
    else:
        marks, changed = _changed_hours(session, test, since, until)
        hours = sorted(changed | set(_hours(hour_of(utc(test.computed_until)), until)))
        ranges = _ranges(hours, since, until)
    if ranges:
        found = ab_arms.hourly_sums(session, test, ranges)
        if hours is not None:
            session.execute(sa.delete(ABTestHour).where(ABTestHour.ab_test_id == test.ab_test_id,
                                                        ABTestHour.hour.in_(hours)))
        session.add_all(ABTestHour(ab_test_id=test.ab_test_id, arm=arm, hour=hour, **sums.columns())
                        for (arm, hour), sums in found.items())
        added = ab_arms.add_units(session, test, ranges)
        test.units_a, test.units_b = test.units_a + added["A"], test.units_b + added["B"]
    if marks:
        # The marks read, by id: one committed since, whatever its id, stays for the next look.
        session.execute(sa.delete(ABTestStaleHour).where(ABTestStaleHour.id.in_(marks)))
    test.computed_until = until
    session.flush()
    totals = {arm: ArmSums() for arm in ARMS}
    for row in session.execute(sa.select(*ABTestHour.__table__.columns).where(ABTestHour.ab_test_id == test.ab_test_id)):
        totals[row.arm].add(ArmSums.from_columns(row))
    totals["A"].units, totals["B"].units = test.units_a, test.units_b
    return totals


def _changed_hours(session: Session, test: ABTestAnalysis, since: datetime,
                   until: datetime) -> tuple[list[int], set[datetime]]:
    """The ids of the test's marks, and the window's hours they and the models' unconsumed marks name."""
    first = hour_of(since)
    mine = session.execute(sa.select(ABTestStaleHour.id, ABTestStaleHour.hour).where(
        ABTestStaleHour.ab_test_id == test.ab_test_id)).all()
    pending = session.scalars(sa.select(StaleHour.hour).distinct().where(
        StaleHour.model_id.in_({test.model_a_id, test.model_b_id}), StaleHour.hour >= first, StaleHour.hour < until))
    hours = {hour_of(hour) for _, hour in mine} | set(map(hour_of, pending))
    return [mark for mark, _ in mine], {hour for hour in hours if first <= hour < until}


def _hours(start: datetime, until: datetime) -> list[datetime]:
    found = []
    while start < until:
        found.append(start)
        start += HOUR
    return found


def _ranges(hours: list[datetime], since: datetime, until: datetime) -> Ranges:
    """The sorted hours as runs of consecutive hours, within [since, until)."""
    ranges: Ranges = []
    for hour in hours:
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    clipped = [(max(start, since), min(end, until)) for start, end in ranges]
    return [(start, end) for start, end in clipped if start < end]


def note_changes(session: Session, changed: list[tuple[uuid.UUID, datetime]]) -> None:
    """Mark the (model, hour)s whose StaleHour marks the tallies' refresh consumes for each test with an arm on
    the model whose hours are kept."""
    models = {model_id for model_id, _ in changed}
    if not models:
        return
    watching = session.execute(sa.select(ABTestAnalysis.ab_test_id, ABTestAnalysis.model_a_id,
                                         ABTestAnalysis.model_b_id).where(
        ABTestAnalysis.computed_until.is_not(None),
        sa.or_(ABTestAnalysis.model_a_id.in_(models), ABTestAnalysis.model_b_id.in_(models)))).all()
    marks = [{"ab_test_id": test_id, "hour": hour} for test_id, model_a, model_b in watching
             for model_id, hour in changed if model_id in (model_a, model_b)]
    if marks:
        session.execute(sa.insert(ABTestStaleHour), marks)


def forget(session: Session, test_id: uuid.UUID) -> None:
    """The test's kept hours, units and marks dropped: its next look computes its window again."""
    for table in (ABTestHour, ABTestUnit, ABTestStaleHour):
        session.execute(sa.delete(table).where(table.ab_test_id == test_id))


def finish(session: Session, test: ABTestAnalysis) -> None:
    """After the look that closed the test's window: what was kept for the next look goes."""
    forget(session, test.ab_test_id)
    test.computed_until = None
