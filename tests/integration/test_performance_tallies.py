"""A model's hours tallied (rollups.py): performance reads the same figures whether an hour is stale
(tallied from its rows at read time) or refreshed by beat, late actuals make their prediction's hour
stale again, an hour whose model monitoring has no type for yet waits, and old tallies go."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.monitoring import partitions, rollups, stale
from services.monitoring.tables import PerformanceHour, StaleHour, VersionBaseline
from tests.support.deployments import model_with_versions

pytestmark = pytest.mark.integration

PREDICTIONS, ACTUALS = "/api/v1/monitoring/predictions", "/api/v1/monitoring/actuals"


def _hours_ago(hours: int, minute: int = 10) -> datetime:
    return datetime.now(timezone.utc).replace(minute=minute, second=0, microsecond=0) - timedelta(hours=hours)


def _post(client, ds, path, records):
    response = client.post(path, json={"records": records}, headers=ds)
    assert response.status_code == 202 and not response.json["rejected"], response.json
    return response.json


def _registered(app, model) -> None:
    """What the registry's model_version.registered event leaves in monitoring (handlers.VersionBaselines)."""
    with app.extensions["modelyard"].db.transaction() as session:
        session.add(VersionBaseline(model_id=uuid.UUID(model["id"]), version=1, model_type=model["type"]))


def _refresh(app) -> int:
    with app.extensions["modelyard"].db.transaction() as session:
        return rollups.refresh(session, hours=1000)


def _stale(app, model_id) -> set[datetime]:
    with app.extensions["modelyard"].db.transaction() as session:
        return {stale.hour_of(hour) for hour in session.scalars(
            sa.select(StaleHour.hour).where(StaleHour.model_id == uuid.UUID(model_id)))}


def _performance(client, ds, model, **query):
    response = client.get(f"/api/v1/models/{model['id']}/performance", query_string=query, headers=ds)
    assert response.status_code == 200, response.json
    return {name: value for name, value in response.json.items() if name != "until"}  # the time of asking


def _missing_rates(client, ds, model) -> dict[str, float]:
    """The whole hours' missing rates with a value, as the anomalies endpoint shows them."""
    answer = client.get(f"/api/v1/models/{model['id']}/anomalies?days=1", headers=ds).json
    return {point["start"]: point["value"] for point in answer["metrics"]["missing_rate"]["series"]
            if point["value"] is not None}


def _missing_rate(records: list[dict], hours_ago: int) -> float:
    hour = stale.hour_of(_hours_ago(hours_ago))
    sent = [record for record in records if "features" in record
            and stale.hour_of(datetime.fromisoformat(record["timestamp"])) == hour]
    return pytest.approx(sum(record["features"]["age"] is None for record in sent) / (2 * len(sent)))


def test_refreshed_hours_read_as_their_rows_and_a_late_actual_makes_its_hour_stale(app, client, ds):
    model = model_with_versions(client, ds, count=2)
    _registered(app, model)
    records = [{"model_id": model["id"], "version": 1 + i % 2, "request_id": f"r-{i}", "prediction": i % 3 % 2,
                "probabilities": {"0": 1 - (i % 10) / 10, "1": (i % 10) / 10}, "latency_ms": 5.0 + i,
                "features": {"age": None if i % 4 == 0 else i, "plan": "pro"},
                "timestamp": _hours_ago(i % 5, minute=i % 60).isoformat(),
                **({"actual": i % 2} if i % 3 else {})}
               for i in range(60)]
    records.append({"model_id": model["id"], "version": 1, "request_id": "failed", "error": "timed out",
                    "timestamp": _hours_ago(2).isoformat()})
    _post(client, ds, PREDICTIONS, records)
    assert _stale(app, model["id"]) == {stale.hour_of(_hours_ago(back)) for back in range(5)}

    by_hour = _performance(client, ds, model, days=1, granularity="hour")  # every hour tallied from its rows
    by_day = _performance(client, ds, model, days=1)
    missing = _missing_rates(client, ds, model)
    assert missing == {stale.hour_of(_hours_ago(back)).isoformat(): _missing_rate(records, back)
                       for back in range(1, 5)}
    assert by_hour["summary"]["predictions"] == 61 and by_hour["summary"]["with_actuals"] == 40
    assert _refresh(app) == 5 and _stale(app, model["id"]) == set()
    assert _performance(client, ds, model, days=1, granularity="hour") == by_hour
    assert _performance(client, ds, model, days=1) == by_day
    assert _refresh(app) == 0

    # r-0, of this hour, had no actual: it arrives now (or days later: its own hour changes, no other).
    _post(client, ds, ACTUALS, [{"model_id": model["id"], "request_id": "r-0", "actual": 0}])
    assert _stale(app, model["id"]) == {stale.hour_of(_hours_ago(0))}
    later = _performance(client, ds, model, days=1, granularity="hour")
    assert later["summary"]["with_actuals"] == 41
    assert later["series"][:-1] == by_hour["series"][:-1]  # the other hours as they were
    assert _refresh(app) == 1 and _performance(client, ds, model, days=1, granularity="hour") == later

    assert _missing_rates(client, ds, model) == missing  # the operating metrics read the same tallies


def test_an_hour_waits_for_its_models_type_and_old_tallies_go(app, client, ds):
    model = model_with_versions(client, ds)
    _registered(app, model)
    _post(client, ds, PREDICTIONS, [{"model_id": model["id"], "version": 1, "request_id": "old", "prediction": 1,
                                     "timestamp": (datetime.now(timezone.utc) - timedelta(days=100)).isoformat()}])
    unknown = uuid.uuid4()  # a model whose registration monitoring has not heard of
    with app.extensions["modelyard"].db.transaction() as session:
        stale.mark_predictions(session, [{"model_id": unknown, "predicted_at": _hours_ago(1)}])
    assert _refresh(app) == 1
    with app.extensions["modelyard"].db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(StaleHour)
                              .where(StaleHour.model_id == unknown)) == 1
        kept = partitions.keep_days(session, retention_days=90, today=datetime.now(timezone.utc).date())
    assert kept.deleted["performance_hours"] == 1
    with app.extensions["modelyard"].db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PerformanceHour)
                              .where(PerformanceHour.model_id == uuid.UUID(model["id"]))) == 0


@pytest.mark.postgres_only  # on SQLite a refresh's transaction holds the one write lock: nothing interleaves
def test_a_mark_made_while_a_refresh_runs_stays_for_the_next(app, client, ds):
    model = model_with_versions(client, ds)
    _registered(app, model)
    _post(client, ds, PREDICTIONS, [{"model_id": model["id"], "version": 1, "request_id": "first", "prediction": 1,
                                     "timestamp": _hours_ago(1).isoformat()}])
    db = app.extensions["modelyard"].db
    with db.transaction() as refreshing:
        assert rollups.refresh(refreshing, hours=10) == 1  # the hour read, its tallies written, not yet committed
        _post(client, ds, PREDICTIONS, [{"model_id": model["id"], "version": 1, "request_id": "second",
                                         "prediction": 0, "timestamp": _hours_ago(1).isoformat()}])
    assert _stale(app, model["id"]) == {stale.hour_of(_hours_ago(1))}
    assert _refresh(app) == 1
    assert _performance(client, ds, model, days=1)["summary"]["predictions"] == 2
