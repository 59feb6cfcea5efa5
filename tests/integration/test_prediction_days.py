"""The predictions store by day: a request id is stored once per model and day, beat's upkeep gives days
their own partitions on Postgres, and what is older than the retention goes (partitions.py)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.monitoring import partitions
from services.monitoring.tables import Actual, Prediction
from tests.support.deployments import model_with_versions

pytestmark = pytest.mark.integration

PREDICTIONS = "/api/v1/monitoring/predictions"


def _post(client, ds, model, request_id: str, days_ago: int, **fields) -> dict:
    moment = datetime.combine(datetime.now(timezone.utc).date() - timedelta(days=days_ago), time(12), timezone.utc)
    response = client.post(PREDICTIONS, json={"model_id": model["id"], "version": 1, "request_id": request_id,
                                              "prediction": 1, "timestamp": moment.isoformat(), **fields},
                           headers=ds)
    assert response.status_code == 202, response.json
    return response.json


def _rows(session) -> list[tuple[str, int]]:
    today = datetime.now(timezone.utc).date()
    return sorted((row.request_id, (today - row.day).days) for row in session.scalars(sa.select(Prediction)))


def _keep(app, retention_days: int) -> partitions.Kept:
    with app.extensions["modelyard"].db.transaction() as session:
        return partitions.keep_days(session, retention_days=retention_days, today=datetime.now(timezone.utc).date())


def test_a_request_id_is_stored_once_a_day_and_old_days_go(app, client, ds):
    model = model_with_versions(client, ds)
    assert _post(client, ds, model, "today", 0, actual=1)["stored"] == 1
    assert _post(client, ds, model, "today", 0)["duplicates"] == 1  # sent again: nothing added
    _post(client, ds, model, "old", 100, actual=0)
    _post(client, ds, model, "kept", 80)
    kept = _keep(app, retention_days=90)
    assert kept.deleted["predictions"] == 1  # on Postgres, from the default partition: it had no day of its own
    with app.extensions["modelyard"].db.transaction() as session:
        assert _rows(session) == [("kept", 80), ("today", 0)]
        # The old prediction's actual was recorded today: it stays until it is as old.
        assert {row.request_id for row in session.scalars(sa.select(Actual))} == {"old", "today"}


@pytest.mark.postgres_only  # partitions are Postgres's; SQLite deletes old rows (the test above)
def test_days_get_their_own_partitions_and_old_ones_are_dropped_whole(app, client, ds):
    model = model_with_versions(client, ds)
    for request_id, days_ago in (("today", 0), ("yesterday", 1), ("long ago", 100)):
        _post(client, ds, model, request_id, days_ago)
    today = datetime.now(timezone.utc).date()
    kept = _keep(app, retention_days=365)
    assert partitions.partition_name(today - timedelta(days=100)) in kept.created
    with app.extensions["modelyard"].db.transaction() as session:
        # Yesterday to two days ahead, and the day the default partition held a row for (some days may have
        # been made by an earlier test: the database outlives a test, its rows do not).
        assert set(partitions.day_partitions(session)) >= {today + timedelta(days=offset)
                                                           for offset in (-100, -1, 0, 1, 2)}
        where = dict(session.execute(sa.text("SELECT request_id, tableoid::regclass::text FROM predictions")).all())
    assert where == {"today": partitions.partition_name(today),
                     "yesterday": partitions.partition_name(today - timedelta(days=1)),
                     "long ago": partitions.partition_name(today - timedelta(days=100))}
    assert _keep(app, retention_days=365).created == []  # nothing more to make
    kept = _keep(app, retention_days=90)
    assert kept.dropped == [partitions.partition_name(today - timedelta(days=100))]
    with app.extensions["modelyard"].db.transaction() as session:
        assert _rows(session) == [("today", 0), ("yesterday", 1)]
        assert partitions.partition_name(today - timedelta(days=100)) not in partitions.day_partitions(session).values()
    # A new record for a day with a partition goes there, and one sent twice is still stored once.
    assert _post(client, ds, model, "today", 0)["duplicates"] == 1
    assert _post(client, ds, model, "later today", 0)["stored"] == 1
