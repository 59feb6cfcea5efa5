"""Training requests are validated before anything is queued: each bad input is a 422 naming its field
(or 404/409), with no job row, no audit row, no event and no task."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from kombu import Connection
from amqp.exceptions import NotFound as QueueMissing

from services.training import coordinator
from services.training.tables import TrainingJob
from shared.audit import AuditEntry
from shared.events.outbox import OutboxEvent
from tests.conftest import RUN_ID
from tests.support.registry import bearer, create_model
from tests.support.training import csv_bytes, training_settings, upload_frame

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    settings = training_settings(database_url, servers, tmp_path_factory.mktemp("requests"), RUN_ID)
    yield settings
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_delete(settings["task_queue_prefix"] + "hpo")


@pytest.fixture
def settings_overrides(settings):
    """The shared `app`, `client` and `ds` fixtures build on this module's settings."""
    return settings


@pytest.fixture
def frame():
    import pandas as pd

    # Class "b" has 10 rows: about 7 in the training part, so 8 folds are too many.
    return pd.DataFrame({"age": range(60), "city": ["x", "y", "z"] * 20, "target": ["a"] * 50 + ["b"] * 10})


@pytest.fixture
def dataset(client, ds, frame):
    return upload_frame(client, ds, frame, "people")


@pytest.fixture
def model(client, ds):
    return create_model(client, ds, type="classification", target_variable="target")


def queued_tasks(settings) -> int:
    with Connection(settings["broker_url"]) as connection:
        try:
            return connection.default_channel.queue_declare(settings["task_queue_prefix"] + "hpo",
                                                            passive=True).message_count
        except QueueMissing:
            return 0


def post(client, headers, model_id, **body):
    return client.post(f"/api/v1/models/{model_id}/trainings", json=body, headers=headers)


def valid(dataset, **changes):
    return {"dataset_id": dataset["id"], "estimator": "logistic_regression", "cross_validation_folds": 3, **changes}


def nothing_was_written(app, settings):
    with app.extensions["modelyard"].db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(TrainingJob)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                              .where(AuditEntry.resource_type == "training_job")) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent)
                              .where(OutboxEvent.type.like("training.%"))) == 0
    assert queued_tasks(settings) == 0


@pytest.mark.parametrize("changes, field", [
    ({"estimator": "quantum_forest"}, "estimator"),
    ({"estimator": "ridge"}, "estimator"),  # a regressor for a classification model
    ({"target": "salary"}, "target"),
    ({"features": ["age", "height"]}, "features"),
    ({"validation_split": 0}, "validation_split"),
    ({"test_split": 1.5}, "test_split"),
    ({"validation_split": 0.5, "test_split": 0.4}, "test_split"),
    ({"cross_validation_folds": 1}, "cross_validation_folds"),
    ({"cross_validation_folds": 8}, "cross_validation_folds"),  # more folds than the smallest class allows
    ({"optimization": {"strategy": "annealing"}}, "optimization"),
    ({"optimization": {"max_trials": 0}}, "optimization"),
    ({"optimization": {"max_trials": 1001}}, "optimization"),
    ({"optimization": {"search_space": {"gamma": {"type": "float", "low": 0.1, "high": 1}}}}, "optimization"),
    ({"optimization": {"search_space": {"C": {"type": "float", "low": 10, "high": 1}}}}, "optimization"),
    ({"optimization": {"search_space": {"C": {"type": "float", "low": 0, "high": 1, "log": True}}}}, "optimization"),
    ({"optimization": {"metric": "rmse"}}, "optimization"),
    ({"preprocessing": {"scaling": "zscore"}}, "preprocessing"),
    ({"augmentation": {"enabled": True, "methods": ["mixup"]}}, "augmentation"),
    ({"dataset_id": None}, "dataset_id"),
    ({"training_data_path": "people.csv"}, "dataset_id"),  # both sources at once
    ({"dataset_id": "00000000-0000-0000-0000-000000000000"}, "dataset_id"),
    ({"colour": "blue"}, "colour"),
])
def test_each_bad_input_is_a_422_naming_its_field_and_nothing_is_queued(app, client, ds, settings, model, dataset,
                                                                       changes, field):
    response = post(client, ds, model["id"], **valid(dataset, **changes))
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"], response.json
    nothing_was_written(app, settings)


def test_an_unknown_model_is_404_and_an_archived_or_untrainable_one_409(app, client, ds, settings, dataset):
    assert post(client, ds, "00000000-0000-0000-0000-000000000000", **valid(dataset)).status_code == 404
    archived = create_model(client, ds, type="classification", target_variable="target")
    client.post(f"/api/v1/models/{archived['id']}/archive", headers=ds)
    assert post(client, ds, archived["id"], **valid(dataset)).status_code == 409
    clustering = create_model(client, ds, type="clustering", target_variable="target")
    assert post(client, ds, clustering["id"], **valid(dataset)).status_code == 409
    nothing_was_written(app, settings)


def test_a_viewer_cannot_request_a_training(app, client, settings, model, dataset):
    viewer = bearer(app, "viewer")
    assert post(client, viewer, model["id"], **valid(dataset)).status_code == 403
    nothing_was_written(app, settings)


def test_a_training_data_path_must_resolve_inside_the_data_root(app, client, ds, settings, model, frame, tmp_path):
    root = settings["data_root"]
    (tmp_path / "outside.csv").write_bytes(csv_bytes(frame))
    link = os.path.join(root, f"link-{os.getpid()}.csv")
    os.symlink(tmp_path / "outside.csv", link)
    try:
        for path in ("../outside.csv", "sub/../people.csv", str(tmp_path / "outside.csv"), os.path.basename(link),
                     "missing.csv"):
            body = {"training_data_path": path, "estimator": "logistic_regression", "cross_validation_folds": 3}
            response = post(client, ds, model["id"], **body)
            assert response.status_code == 422, (path, response.json)
            assert "training_data_path" in response.json["errors"]
    finally:
        os.unlink(link)
    nothing_was_written(app, settings)


def test_a_valid_request_is_accepted_with_202_stored_audited_and_queued_once(app, client, ds, settings, model, frame):
    inside = os.path.join(settings["data_root"], "people.csv")
    with open(inside, "wb") as handle:
        handle.write(csv_bytes(frame))
    response = post(client, ds, model["id"], training_data_path="people.csv", estimator="random_forest",
                    cross_validation_folds=3, optimization={"strategy": "grid", "max_trials": 3})
    assert response.status_code == 202, response.json
    assert response.json["status"] == "queued"
    assert response.headers["Location"].endswith(response.json["url"])
    job = client.get(response.json["url"], headers=ds).json
    assert job["status"] == "queued" and job["training_data_path"] == os.path.realpath(inside)
    assert job["spec"]["features"] == ["age", "city"] and job["spec"]["parallelism"] == 2
    assert job["spec"]["metric"] == "accuracy" and job["parent_version"] is None
    assert len(job["dataset_sha256"]) == 64
    with app.extensions["modelyard"].db.transaction() as session:
        assert session.scalar(sa.select(AuditEntry.action).where(AuditEntry.resource_type == "training_job")) \
            == "training.requested"
    assert queued_tasks(settings) == 1
    listed = client.get(f"/api/v1/models/{model['id']}/trainings", headers=ds).json
    assert [item["id"] for item in listed["items"]] == [response.json["id"]]
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(settings["task_queue_prefix"] + "hpo")


def test_cancelling_a_queued_job_cancels_it_and_a_second_cancel_is_409(client, ds, settings, model, dataset):
    accepted = post(client, ds, model["id"], **valid(dataset)).json
    cancelled = client.post(f"{accepted['url']}/cancel", headers=ds)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert client.post(f"{accepted['url']}/cancel", headers=ds).status_code == 409
    assert client.get("/api/v1/trainings/00000000-0000-0000-0000-000000000000", headers=ds).status_code == 404
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(settings["task_queue_prefix"] + "hpo")


def test_a_cancelled_job_ends_its_phase(app, client, ds, settings, model, dataset):
    from services.training.tables import RUNNING, SEARCHING

    accepted = post(client, ds, model["id"], **valid(dataset)).json
    with app.extensions["modelyard"].db.transaction() as session:
        job = session.get(TrainingJob, uuid.UUID(accepted["id"]))
        job.status, job.phase = RUNNING, SEARCHING  # as a start leaves it
    cancelled = client.post(f"{accepted['url']}/cancel", headers=ds)
    assert cancelled.status_code == 200 and (cancelled.json["status"], cancelled.json["phase"]) == ("cancelled", None)
    job = client.get(accepted["url"], headers=ds).json
    assert (job["status"], job["phase"]) == ("cancelled", None)
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(settings["task_queue_prefix"] + "hpo")


def test_a_trained_model_the_registry_cannot_register_fails_its_job_instead_of_waiting(app, client, ds, settings,
                                                                                      model, dataset):
    from services.registry.handlers import TrainingOutcomes
    from services.training.handlers import VersionRegistrations
    from services.training.tables import REGISTERING, RUNNING
    from shared.config import load_settings
    from shared.events.catalogue import build_envelope
    from shared.events.consumer import process

    accepted = post(client, ds, model["id"], **valid(dataset)).json
    db = app.extensions["modelyard"].db
    with db.transaction() as session:
        job = session.get(TrainingJob, uuid.UUID(accepted["id"]))
        job.status, job.phase = RUNNING, REGISTERING  # as the final fit leaves it
    assert client.post(f"/api/v1/models/{model['id']}/archive", headers=ds).status_code == 200
    completed = build_envelope("training.completed", {
        "job_id": accepted["id"], "model_id": model["id"], "artifact_sha256": "0" * 64, "dataset_id": dataset["id"],
        "dataset_sha256": dataset["sha256"], "parent_version": None, "estimator": "logistic_regression",
        "best_params": {}, "cv_metrics": {}, "test_metrics": {}, "code_version": "test", "random_state": 0,
        "library_versions": {}, "profile": {}, "actor": "dana"}, producer="training")
    process(db, TrainingOutcomes(load_settings(settings)), completed)
    with db.transaction() as session:
        rejected = session.scalar(sa.select(OutboxEvent.envelope).where(OutboxEvent.type == "model_version.rejected"))
    assert rejected["payload"]["training_job_id"] == accepted["id"]

    process(db, VersionRegistrations(), rejected)
    job = client.get(accepted["url"], headers=ds).json
    assert (job["status"], job["phase"]) == ("failed", None)
    assert "archived" in job["error"]
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(settings["task_queue_prefix"] + "hpo")


def test_a_jobs_unsent_task_is_sent_again_at_once_for_that_job_and_by_the_sweep_only_when_late(
        app, client, ds, settings, model, dataset):
    accepted = post(client, ds, model["id"], **valid(dataset))
    assert accepted.status_code == 202 and queued_tasks(settings) == 1
    queue, db = settings["task_queue_prefix"] + "hpo", app.extensions["modelyard"].db
    with db.transaction() as session:
        assert coordinator.redispatch(session=session, queue=queue) == 0  # just sent: not late yet
    with db.transaction() as session:
        # What a redelivered trial task does for its job, whose worker died between commit and send.
        assert coordinator.redispatch(session=session, queue=queue, job_id=uuid.UUID(accepted.json["id"])) == 1
    assert queued_tasks(settings) == 2
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(queue)


def test_a_training_is_requested_and_listed_by_the_models_name(app, client, ds, settings, dataset):
    model = create_model(client, ds, "churn é", type="classification", target_variable="target")
    accepted = post(client, ds, "churn%20%C3%A9", **valid(dataset))
    assert accepted.status_code == 202, accepted.json
    assert client.get(accepted.json["url"], headers=ds).json["model_id"] == model["id"]
    listed = client.get("/api/v1/models/churn%20%C3%A9/trainings", headers=ds).json
    assert [item["id"] for item in listed["items"]] == [accepted.json["id"]]
    assert client.get(f"/api/v1/models/{model['id']}/trainings", headers=ds).json == listed
    unknown = client.get("/api/v1/models/no-such-model/trainings", headers=ds)
    assert unknown.status_code == 404 and "'no-such-model'" in unknown.json["detail"]
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(settings["task_queue_prefix"] + "hpo")


def test_the_briefs_names_are_accepted_and_stored_as_ours(client, ds, settings, model, dataset):
    body = {"dataset_id": dataset["id"], "cross_validation_folds": 3, "max_trials": 3,
            "optimization": {"metric": "f1_score"},
            "preprocessing": {"encoding": "label", "feature_selection": "mutual_info"}}
    response = post(client, ds, model["id"], **body)
    assert response.status_code == 202, response.json
    job = client.get(response.json["url"], headers=ds).json
    assert (job["estimator"], job["metric"], job["spec"]["max_trials"]) == ("random_forest", "f1", 3)
    assert job["spec"]["preprocessing"]["encoding"] == "ordinal"
    assert job["spec"]["preprocessing"]["feature_selection"] == {"method": "mutual_info", "k": None}
    same_twice = {**body, "estimator": "random_forest", "optimization": {"max_trials": 3}}
    assert post(client, ds, model["id"], **same_twice).status_code == 202  # the same number in both places
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_purge(settings["task_queue_prefix"] + "hpo")


def test_max_trials_given_twice_and_different_is_a_422(app, client, ds, settings, model, dataset):
    response = post(client, ds, model["id"], **valid(dataset, max_trials=20, optimization={"max_trials": 5}))
    assert response.status_code == 422, response.json
    assert "optimization.max_trials" in response.json["errors"]["max_trials"][0]
    nothing_was_written(app, settings)


def test_a_feature_selection_method_alone_is_still_checked(app, client, ds, settings, model, dataset):
    response = post(client, ds, model["id"], **valid(dataset, preprocessing={"feature_selection": "chi2"}))
    assert response.status_code == 422, response.json
    assert "method" in response.json["errors"]["preprocessing"]["feature_selection"]
    nothing_was_written(app, settings)


@pytest.mark.parametrize("hyperparameters, estimator, bad", [
    ({"n_estimators": 100, "C": 1.0}, None, ["C"]),             # the default random forest has no C
    ({"n_estimators": 100, "C": 1.0}, "svm", ["n_estimators"]),  # an SVM has C, not trees
    ({"max_depth": -1}, None, ["max_depth"]),                   # a parameter it has, a value it refuses
    ({"n_jobs": 4}, None, ["n_jobs"]),                          # set by the platform
    ({"random_state": 42}, "knn", ["random_state"]),            # k-nearest neighbours take no seed
])
def test_a_model_hyperparameter_the_estimator_does_not_take_is_a_422_naming_it(
        app, client, ds, settings, dataset, hyperparameters, estimator, bad):
    model = create_model(client, ds, type="classification", target_variable="target", hyperparameters=hyperparameters)
    body = valid(dataset)
    if estimator is None:
        del body["estimator"]
    else:
        body["estimator"] = estimator
    response = post(client, ds, model["id"], **body)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]["hyperparameters"]) == bad
    assert f"'{bad[0]}'" in response.json["detail"] and "model's hyperparameters" in response.json["detail"]
    nothing_was_written(app, settings)
