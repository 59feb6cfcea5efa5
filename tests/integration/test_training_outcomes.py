"""What a training's events do to its model in the registry: a failed or cancelled training leaves the
model where it was.

The registry's consumer gets the events the training service sends, each in its own transaction as the
runner hands them over; what a user sees is read over the API.
"""

from __future__ import annotations

import uuid

import pytest

from services.registry.handlers import TrainingOutcomes
from shared.artifacts import ArtifactStore
from shared.config import load_settings
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from tests.support.registry import create_model, upload_version

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

    def complete(self) -> None:
        artifact = ArtifactStore.from_settings(self.settings).put_bytes(f"model of {self.job_id}".encode())
        self._send("training.completed", artifact_sha256=artifact.sha256, dataset_id=None, dataset_sha256="0" * 64,
                   parent_version=None, estimator="logistic_regression", best_params={}, cv_metrics={},
                   test_metrics={}, code_version="test", random_state=0, library_versions={}, profile={})


@pytest.fixture
def training(app, settings_overrides):
    return lambda model: Training(app, settings_overrides, model["id"])


def seen(client, headers, model) -> dict:
    response = client.get(f"/api/v1/models/{model['id']}", headers=headers)
    assert response.status_code == 200
    return response.json


def trained_model(client, headers, training) -> dict:
    model = create_model(client, headers)
    training(model).start().complete()
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
