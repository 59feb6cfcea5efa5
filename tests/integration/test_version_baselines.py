"""Monitoring keeps each version's baseline from the registry's own events: registered, deleted, and the
model deleted with all its versions. Redelivered events change nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from services.monitoring.handlers import VersionBaselines
from services.monitoring.tables import VersionBaseline
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from tests.support.deployments import model_with_versions

pytestmark = pytest.mark.integration


def _events(app, event_type: str) -> list[dict]:
    with app.extensions["modelyard"].db.transaction() as session:
        return [row.envelope for row in session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.seq))]


def _baselines(app) -> dict[tuple[str, int], VersionBaseline]:
    with app.extensions["modelyard"].db.transaction() as session:
        return {(str(row.model_id), row.version): row for row in session.scalars(sa.select(VersionBaseline))}


def test_a_versions_baseline_follows_the_registrys_events(app, client, ds, admin):
    db, consumer = app.extensions["modelyard"].db, VersionBaselines()
    model = model_with_versions(client, ds, count=2, type="classification")
    registered = _events(app, "model_version.registered")
    assert [event["payload"]["version"] for event in registered] == [1, 2]
    for event in registered:
        assert process(db, consumer, event)
    assert not process(db, consumer, registered[0])  # redelivered: already processed
    baselines = _baselines(app)
    assert set(baselines) == {(model["id"], 1), (model["id"], 2)}
    # An uploaded version: its type and metrics, and no reference to test drift against.
    first = baselines[(model["id"], 1)]
    assert (first.model_type, first.reference_sha256, first.feature_importances) == ("classification", None, None)

    assert client.delete(f"/api/v1/models/{model['id']}/versions/1", headers=admin).status_code == 204
    [deleted] = _events(app, "model_version.deleted")
    assert process(db, consumer, deleted)
    assert set(_baselines(app)) == {(model["id"], 2)}

    assert client.delete(f"/api/v1/models/{model['id']}", headers=admin).status_code == 204
    [gone] = _events(app, "model.deleted")
    assert process(db, consumer, gone)
    assert _baselines(app) == {}
