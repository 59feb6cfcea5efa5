"""Editing and deleting versions: what may change, what lineage keeps fixed, and what aliases protect."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.registry.handlers import TrainingOutcomes
from services.registry.lineage import add_lineage_edge
from services.registry.tables import LineageEdge, ModelVersion
from shared.audit import AuditEntry
from shared.config import load_settings
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from tests.support.registry import bearer, create_model, upload_csv, upload_version

pytestmark = pytest.mark.integration

VERSIONS = "/api/v1/models/churn/versions"


@pytest.fixture
def model(client, ds):
    model = create_model(client, ds, "churn")
    for data in (b"v1", b"v2", b"v3"):
        assert upload_version(client, ds, model["id"], data).status_code == 201
    return model


@pytest.fixture
def admin(app):
    return bearer(app, "admin", "root")


def _rows(app, entity, *conditions, order_by=None):
    with app.extensions["modelyard"].db.transaction() as session:
        return list(session.scalars(sa.select(entity).where(*conditions).order_by(order_by)))


def test_a_versions_description_tags_and_status_can_be_changed(client, ds, model):
    response = client.patch(f"{VERSIONS}/2", json={"description": "better recall", "tags": {"stage": "qa"},
                                                   "status": "archived"}, headers=ds)
    assert response.status_code == 200, response.json
    assert (response.json["description"], response.json["tags"], response.json["status"]) == \
        ("better recall", {"stage": "qa"}, "archived")
    assert client.get(f"{VERSIONS}/2", headers=ds).json == response.json
    restored = client.patch(f"{VERSIONS}/2", json={"status": "ready"}, headers=ds)
    assert restored.json["status"] == "ready" and restored.json["description"] == "better recall"
    assert client.get(f"{VERSIONS}/1", headers=ds).json["status"] == "ready"


@pytest.mark.parametrize("field, value", [
    ("parameters", {"C": 2.0}), ("metrics", {"auc": 0.99}), ("dataset_id", "00000000-0000-4000-8000-000000000002"),
    ("parent_version", 1), ("training_job_id", "00000000-0000-4000-8000-000000000003"), ("artifact_id", "a" * 64),
    ("artifact_sha256", "a" * 64), ("code_version", "git:abc"), ("flavor", "onnx"), ("profile", {}),
    ("provenance", "trained"),
])
def test_a_field_lineage_rests_on_cannot_be_changed_and_the_422_names_it(app, client, ds, model, field, value):
    before = client.get(f"{VERSIONS}/2", headers=ds).json
    response = client.patch(f"{VERSIONS}/2", json={"description": "sneaky", field: value}, headers=ds)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert list(response.json["errors"]) == [field]
    assert "lineage" in response.json["errors"][field][0]
    assert client.get(f"{VERSIONS}/2", headers=ds).json == before
    assert _rows(app, AuditEntry, AuditEntry.action == "model_version.updated") == []


@pytest.mark.parametrize("body, field", [({"status": "deleted"}, "status"), ({"number": 7}, "number"),
                                         ({"tags": {"a": 1}}, "tags")])
def test_other_bad_edits_are_422_naming_the_field(client, ds, model, body, field):
    response = client.patch(f"{VERSIONS}/2", json=body, headers=ds)
    assert response.status_code == 422 and field in response.json["errors"]


def test_archiving_a_version_an_alias_points_at_is_a_409_naming_the_alias(client, ds, model):
    client.put("/api/v1/models/churn/aliases/champion", json={"version": 2}, headers=ds)
    refused = client.patch(f"{VERSIONS}/2", json={"status": "archived", "description": "old"}, headers=ds)
    assert refused.status_code == 409
    assert "'champion'" in refused.json["detail"] and "status" in refused.json["errors"]
    assert client.get(f"{VERSIONS}/2", headers=ds).json["status"] == "ready"
    assert client.get(f"{VERSIONS}/2", headers=ds).json["description"] == ""
    client.put("/api/v1/models/churn/aliases/champion", json={"version": 3}, headers=ds)
    assert client.patch(f"{VERSIONS}/2", json={"status": "archived"}, headers=ds).status_code == 200


def test_an_alias_cannot_point_at_an_archived_version(client, ds, model):
    client.patch(f"{VERSIONS}/1", json={"status": "archived"}, headers=ds)
    refused = client.put("/api/v1/models/churn/aliases/champion", json={"version": 1}, headers=ds)
    assert refused.status_code == 409 and "archived" in refused.json["detail"]
    assert client.get("/api/v1/models/churn/aliases/champion", headers=ds).status_code == 404
    client.patch(f"{VERSIONS}/1", json={"status": "ready"}, headers=ds)
    assert client.put("/api/v1/models/churn/aliases/champion", json={"version": 1}, headers=ds).status_code == 200


def test_a_deleted_versions_number_is_never_given_again_and_latest_falls_to_the_highest_left(
        client, ds, admin, model):
    client.put("/api/v1/models/churn/aliases/champion", json={"version": 3}, headers=ds)
    assert client.get("/api/v1/models/churn", headers=ds).json["latest_version"] == 3  # now cached
    refused = client.delete(f"{VERSIONS}/3", headers=admin)
    assert refused.status_code == 409 and "'champion'" in refused.json["detail"]
    assert client.get(f"{VERSIONS}/3", headers=ds).status_code == 200

    client.delete("/api/v1/models/churn/aliases/champion", headers=ds)
    assert client.delete(f"{VERSIONS}/3", headers=admin).status_code == 204
    assert client.get(f"{VERSIONS}/3", headers=ds).status_code == 404
    assert client.delete(f"{VERSIONS}/3", headers=admin).status_code == 404
    assert client.get("/api/v1/models/churn", headers=ds).json["latest_version"] == 2
    assert client.get(f"{VERSIONS}/latest", headers=ds).json["number"] == 2
    assert upload_version(client, ds, model["id"], b"v4").json["number"] == 4
    assert client.get("/api/v1/models/churn", headers=ds).json["latest_version"] == 4

    for number in (4, 2, 1):
        assert client.delete(f"{VERSIONS}/{number}", headers=admin).status_code == 204
    assert client.get("/api/v1/models/churn", headers=ds).json["latest_version"] is None
    assert client.get(f"{VERSIONS}/latest", headers=ds).status_code == 404
    assert upload_version(client, ds, model["id"], b"v5").json["number"] == 5


def test_deleting_a_version_drops_the_lineage_edges_that_touch_it(app, client, ds, admin):
    model = create_model(client, ds, "churn")
    dataset = upload_csv(client, ds, b"a,b\n1,2\n").json
    first = upload_version(client, ds, model["id"], b"v1", metadata={"dataset_id": dataset["id"]}).json
    upload_version(client, ds, model["id"], b"v2", metadata={"parent_version": 1})
    assert client.delete(f"{VERSIONS}/1", headers=admin).status_code == 204
    touching = (sa.or_(LineageEdge.source_id == first["id"], LineageEdge.target_id == first["id"]),)
    assert _rows(app, LineageEdge, *touching) == []
    graph = client.get(f"{VERSIONS}/2/lineage?direction=up", headers=ds).json
    assert graph["edges"] == [] and [node["id"] for node in graph["nodes"]] == [graph["root"]]


@pytest.mark.parametrize("served_by", ["deployment", "ab_test"])
def test_a_version_that_served_traffic_is_archived_not_deleted(app, client, ds, admin, model, served_by):
    version = client.get(f"{VERSIONS}/2", headers=ds).json
    with app.extensions["modelyard"].db.transaction() as session:  # as the deployment service records a rollout
        add_lineage_edge(session=session, source_type="model_version", source_id=version["id"],
                         target_type=served_by, target_id=uuid.uuid4(), relation="served_by")
    refused = client.delete(f"{VERSIONS}/2", headers=admin)
    assert refused.status_code == 409 and "archive it" in refused.json["detail"]
    assert client.get(f"{VERSIONS}/2", headers=ds).status_code == 200
    assert client.patch(f"{VERSIONS}/2", json={"status": "archived"}, headers=ds).json["status"] == "archived"


@pytest.mark.parametrize("role", ["viewer", "data_scientist", "ml_engineer"])
def test_only_an_admin_deletes_a_version_and_a_refusal_changes_nothing(app, client, ds, model, role):
    response = client.delete(f"{VERSIONS}/3", headers=bearer(app, role))
    assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert client.get(f"{VERSIONS}/3", headers=ds).status_code == 200
    assert client.get("/api/v1/models/churn", headers=ds).json["latest_version"] == 3
    assert _rows(app, OutboxEvent, OutboxEvent.type == "model_version.deleted") == []


def test_a_viewer_cannot_edit_a_version(app, client, ds, model):
    response = client.patch(f"{VERSIONS}/3", json={"description": "x"}, headers=bearer(app, "viewer"))
    assert response.status_code == 403
    assert client.get(f"{VERSIONS}/3", headers=ds).json["description"] == ""


def test_latest_is_for_reads_only(client, ds, admin, model):
    assert client.patch(f"{VERSIONS}/latest", json={"description": "x"}, headers=ds).status_code == 405
    assert client.delete(f"{VERSIONS}/latest", headers=admin).status_code == 405
    assert client.get(f"{VERSIONS}/latest", headers=ds).json["description"] == ""


def test_an_edit_and_a_delete_each_leave_an_audit_row_and_their_event(app, client, ds, admin, model):
    client.patch(f"{VERSIONS}/2", json={"description": "kept", "tags": {}}, headers=ds)  # tags unchanged
    client.patch(f"{VERSIONS}/2", json={"description": "kept"}, headers=ds)  # no change: no trail
    client.delete(f"{VERSIONS}/2", headers=admin)
    audit = _rows(app, AuditEntry, AuditEntry.resource_type == "model_version",
                  AuditEntry.action != "model_version.registered", order_by=AuditEntry.seq)
    assert [(entry.action, entry.actor) for entry in audit] == [("model_version.updated", "dana"),
                                                               ("model_version.deleted", "root")]
    assert audit[0].before["description"] == "" and audit[0].after["description"] == "kept"
    events = [row.envelope for row in _rows(app, OutboxEvent, OutboxEvent.type.in_(
        ("model_version.updated", "model_version.deleted")), order_by=OutboxEvent.seq)]
    assert [event["type"] for event in events] == ["model_version.updated", "model_version.deleted"]
    assert events[0]["payload"] == {"model_id": model["id"], "version": 2, "status": "ready",
                                    "changes": {"description": "kept"}, "actor": "dana"}
    assert events[1]["payload"] == {"model_id": model["id"], "version": 2, "artifact_sha256": audit[1].before[
        "artifact_sha256"], "actor": "root"}


def test_a_trained_version_whose_parent_was_deleted_meanwhile_is_rejected_not_half_registered(
        app, client, ds, admin, model, settings_overrides):
    client.delete(f"{VERSIONS}/3", headers=admin)
    job_id = str(uuid.uuid4())
    completed = build_envelope("training.completed", {
        "job_id": job_id, "model_id": model["id"], "artifact_sha256": "0" * 64, "dataset_id": None,
        "dataset_sha256": "0" * 64, "parent_version": 3, "estimator": "logistic_regression", "best_params": {},
        "cv_metrics": {}, "test_metrics": {}, "code_version": "test", "random_state": 0, "library_versions": {},
        "profile": {}, "actor": "dana"}, producer="training")
    process(app.extensions["modelyard"].db, TrainingOutcomes(load_settings(settings_overrides)), completed)
    [rejected] = _rows(app, OutboxEvent, OutboxEvent.type == "model_version.rejected")
    assert rejected.envelope["payload"]["training_job_id"] == job_id
    assert "no version 3" in rejected.envelope["payload"]["reason"]
    assert [v.number for v in _rows(app, ModelVersion, order_by=ModelVersion.number)] == [1, 2]
