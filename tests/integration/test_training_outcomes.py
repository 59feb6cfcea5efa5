"""What a training's events do to its model in the registry: a failed or cancelled training leaves the
model where it was, and a trained version gives a model without features those it was trained on.

The registry's consumer gets the events the training service sends, each in its own transaction as the
runner hands them over; what a user sees is read over the API.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.registry.handlers import TrainingOutcomes
from shared.artifacts import ArtifactStore
from shared.config import load_settings
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from tests.support.registry import bearer, create_model, upload_version

pytestmark = pytest.mark.integration


class Training:
    """One training job of a model, as the registry hears of it."""

    def __init__(self, app, settings, model_id: str):
        self.db = app.extensions["modelyard"].db
        self.settings = load_settings(settings)
        self.consumer = TrainingOutcomes(self.settings)
        self.job_id, self.model_id = str(uuid.uuid4()), model_id

    def _send(self, event_type: str, **payload) -> None:
        payload = {"job_id": self.job_id, "model_id": self.model_id, "actor": "dana", **payload}
        assert process(self.db, self.consumer, build_envelope(event_type, payload, producer="training"))

    def start(self) -> Training:
        self._send("training.started", strategy="tpe", trials_total=4)
        return self

    def fail(self, *, cancelled: bool = False) -> None:
        self._send("training.failed", error="Cancelled by dana." if cancelled else "No trial completed.",
                   cancelled=cancelled)

    def complete(self, **extra) -> None:
        artifact = ArtifactStore.from_settings(self.settings).put_bytes(f"model of {self.job_id}".encode())
        self._send("training.completed", artifact_sha256=artifact.sha256, dataset_id=None, dataset_sha256="0" * 64,
                   parent_version=None, estimator="logistic_regression", best_params={}, cv_metrics={},
                   test_metrics={}, code_version="test", random_state=0, library_versions={}, profile={}, **extra)


@pytest.fixture
def training(app, settings_overrides):
    return lambda model: Training(app, settings_overrides, model["id"])


def seen(client, headers, model) -> dict:
    response = client.get(f"/api/v1/models/{model['id']}", headers=headers)
    assert response.status_code == 200
    return response.json


def trained_model(client, headers, training, **fields) -> dict:
    model = create_model(client, headers, **fields)
    training(model).start().complete(features=["tenure", "plan"])
    assert seen(client, headers, model)["status"] == "trained"
    return model


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled", "failed"])
def test_a_cancelled_or_failed_training_leaves_a_trained_model_trained(client, ds, training, cancelled):
    model = trained_model(client, ds, training)
    retraining = training(model).start()
    assert seen(client, ds, model)["status"] == "training"
    retraining.fail(cancelled=cancelled)
    assert seen(client, ds, model)["status"] == "trained"


def test_a_failed_training_leaves_a_registered_model_with_an_uploaded_version_registered(client, ds, training):
    model = create_model(client, ds)
    assert upload_version(client, ds, model["id"]).status_code == 201
    training(model).start().fail()
    assert seen(client, ds, model)["status"] == "registered"


def test_a_failed_first_training_marks_the_model_failed(client, ds, training):
    model = create_model(client, ds)
    training(model).start().fail()
    assert seen(client, ds, model)["status"] == "failed"
    training(model).start().fail(cancelled=True)  # and a failed retraining leaves it failed
    assert seen(client, ds, model)["status"] == "failed"


def test_a_model_its_user_moved_out_of_training_keeps_that_status_when_the_training_fails(client, ds, training):
    model = trained_model(client, ds, training)
    stuck = training(model).start()
    aborted = client.patch(f"/api/v1/models/{model['id']}", json={"status": "registered"}, headers=ds)
    assert aborted.status_code == 200 and aborted.json["status"] == "registered"
    stuck.fail()
    assert seen(client, ds, model)["status"] == "registered"


def test_overlapping_trainings_send_the_model_back_to_its_status_before_the_first(client, ds, training):
    model = trained_model(client, ds, training)
    first, second = training(model).start(), training(model).start()
    second.fail(cancelled=True)
    assert seen(client, ds, model)["status"] == "trained"
    first.complete()
    after = seen(client, ds, model)
    assert (after["status"], after["latest_version"]) == ("trained", 2)


def test_a_trained_version_gives_a_featureless_model_its_features_in_one_audited_update(app, client, ds, training):
    model = create_model(client, ds)
    training(model).start().complete(features=["tenure", "plan"])
    after = seen(client, ds, model)
    assert (after["status"], after["features"], after["latest_version"]) == ("trained", ["tenure", "plan"], 1)

    audit = client.get("/api/v1/audit", query_string={"resource_type": "model", "resource_id": model["id"]},
                       headers=bearer(app, "admin")).json["items"]
    assert [entry["action"] for entry in audit] == ["model.updated", "model.updated", "model.created"]
    assert (audit[0]["after"]["status"], audit[0]["after"]["features"]) == ("trained", ["tenure", "plan"])
    with app.extensions["modelyard"].db.transaction() as session:
        updated = session.scalar(sa.select(OutboxEvent.envelope).where(OutboxEvent.type == "model.updated")
                                 .order_by(OutboxEvent.seq.desc()).limit(1))
    assert updated["payload"]["changes"] == {"status": "trained", "features": ["tenure", "plan"]}


def test_a_model_with_features_keeps_them_when_a_version_is_trained(client, ds, training):
    model = trained_model(client, ds, training, features=["age"])
    assert seen(client, ds, model)["features"] == ["age"]


def test_a_trained_version_from_an_event_without_features_leaves_the_model_featureless(client, ds, training):
    model = create_model(client, ds)
    training(model).start().complete()
    after = seen(client, ds, model)
    assert (after["status"], after["features"], after["latest_version"]) == ("trained", [], 1)


def test_a_trained_version_gives_its_features_even_to_a_model_whose_status_may_not_become_trained(
        client, ds, training):
    model = create_model(client, ds)
    job = training(model).start()
    assert client.patch(f"/api/v1/models/{model['id']}", json={"status": "failed"}, headers=ds).status_code == 200
    job.complete(features=["tenure", "plan"])  # failed -> trained is no move the lifecycle allows
    after = seen(client, ds, model)
    assert (after["status"], after["features"], after["latest_version"]) == ("failed", ["tenure", "plan"], 1)


def test_a_deployed_model_stays_deployed_when_a_retraining_completes(client, ds, training):
    model = trained_model(client, ds, training)
    assert client.patch(f"/api/v1/models/{model['id']}", json={"status": "deployed"}, headers=ds).status_code == 200
    training(model).start().complete()  # deployed -> training is no move; the version still registers
    after = seen(client, ds, model)
    assert (after["status"], after["latest_version"]) == ("deployed", 2)


def test_a_model_whose_versions_were_all_deleted_goes_back_to_its_status_when_a_training_fails(
        app, client, ds, training):
    model = create_model(client, ds)
    assert upload_version(client, ds, model["id"]).status_code == 201
    assert client.delete(f"/api/v1/models/{model['id']}/versions/1", headers=bearer(app, "admin")).status_code == 204
    training(model).start().fail()  # it had a version once: not `failed`, as a first training would leave it
    assert seen(client, ds, model)["status"] == "registered"
