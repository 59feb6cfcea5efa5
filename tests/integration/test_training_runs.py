"""Trainings run end to end on real Celery workers: every strategy on a classification and a regression
dataset, a worker killed mid-job, reproducibility, cancel, and data that parses but cannot train."""

from __future__ import annotations

import io
import os
import re
import signal
import time
import uuid

import pytest
import sqlalchemy as sa

from services.monitoring.handlers import VersionBaselines
from services.monitoring.tables import VersionBaseline
from services.registry.handlers import TrainingOutcomes
from services.training.data import load_frame
from services.training.handlers import VersionRegistrations
from shared.model_files import loads_trusted
from services.training.tables import Trial
from shared.config import load_settings
from shared.served_model import REFERENCE_PREDICTION
from tests.conftest import RUN_ID
from tests.support.polling import wait_for
from tests.support.registry import create_model
from tests.support.training import (
    bundled_frame, celery_worker, csv_bytes, event_pipeline, training_settings, upload_frame,
)

pytestmark = pytest.mark.integration

FINISHED = ("succeeded", "failed", "cancelled")
# Small, fast searches: the point is the machinery, not the model.
FAST = {
    "classification": ("logistic_regression", {"C": {"type": "float", "low": 0.01, "high": 10, "log": True}}),
    "regression": ("ridge", {"alpha": {"type": "float", "low": 0.01, "high": 10, "log": True}}),
}


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return training_settings(database_url, servers, tmp_path_factory.mktemp("runs"), RUN_ID)


@pytest.fixture
def settings_overrides(settings):
    """The shared `app`, `client` and `ds` fixtures build on this module's settings."""
    return settings


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory):
    consumers = [TrainingOutcomes(load_settings(settings)), VersionRegistrations(), VersionBaselines()]
    with event_pipeline(load_settings(settings), consumers):
        with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log") as running:
            yield running


@pytest.fixture(scope="module")
def breast_cancer():
    return bundled_frame("breast_cancer")[0]


@pytest.fixture(scope="module")
def diabetes():
    return bundled_frame("diabetes")[0]


def request_training(client, headers, model_id, **body):
    response = client.post(f"/api/v1/models/{model_id}/trainings", json=body, headers=headers)
    assert response.status_code == 202, response.json
    return response.json


def wait_finished(client, headers, url, timeout=60.0):
    def finished():
        job = client.get(url, headers=headers).json
        return job if job["status"] in FINISHED else None

    return wait_for(finished, timeout=timeout, what=f"{url} to finish")


def model_status(client, headers, model_id, expected, timeout=10.0):
    return wait_for(lambda: client.get(f"/api/v1/models/{model_id}", headers=headers).json["status"] == expected,
                    timeout=timeout, what=f"model status {expected}")


def train(client, headers, frame, model_type, strategy, *, trials=4, **extra):
    dataset = upload_frame(client, headers, frame, f"data-{model_type}")
    model = create_model(client, headers, type=model_type, target_variable="target")
    estimator, space = FAST[model_type]
    accepted = request_training(client, headers, model["id"], dataset_id=dataset["id"], estimator=estimator,
                                cross_validation_folds=3, random_state=7,
                                optimization={"strategy": strategy, "max_trials": trials, "search_space": space},
                                **extra)
    return model, dataset, accepted


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe", "bayesian", "genetic"])
@pytest.mark.parametrize("model_type", ["classification", "regression"])
def test_each_strategy_trains_and_registers_a_version_that_loads_and_predicts(
        app, client, ds, breast_cancer, diabetes, strategy, model_type):
    frame = breast_cancer if model_type == "classification" else diabetes
    model, dataset, accepted = train(client, ds, frame, model_type, strategy)
    assert accepted["status"] == "queued" and accepted["url"] == f"/api/v1/trainings/{accepted['id']}"

    job = wait_finished(client, ds, accepted["url"])
    assert job["status"] == "succeeded", job
    assert job["version_number"] == 1
    assert job["progress"]["trials_done"] == job["progress"]["trials_total"] == 4
    assert job["best_params"] and set(job["best_params"]) == set(FAST[model_type][1])
    expected_metrics = {"accuracy", "precision", "recall", "f1", "roc_auc"} if model_type == "classification" \
        else {"rmse", "mae", "r2"}
    assert set(job["test_metrics"]) == expected_metrics
    assert job["cv_scores"]["metric"] == ("accuracy" if model_type == "classification" else "r2")
    assert len(job["cv_scores"]["folds"]) == 3

    trials = client.get(f"{accepted['url']}/trials", headers=ds).json["items"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["state"] == "complete" and len(t["fold_scores"]) == 3 and t["duration_s"] > 0 for t in trials)

    version = client.get(f"/api/v1/models/{model['id']}/versions/1", headers=ds).json
    assert version["provenance"] == "trained" and version["flavor"] == "skops"
    assert (version["format"], version["loadable"]) == ("skops", True)
    assert version["dataset_id"] == dataset["id"] and version["dataset_sha256"] == dataset["sha256"]
    assert version["training_job_id"] == accepted["id"]
    assert version["parameters"] == job["best_params"]
    assert version["code_version"] and version["tags"]["random_state"] == "7"
    assert {"library.sklearn", "library.skops"} <= set(version["tags"])
    assert version["profile"]["features"] and version["profile"]["target"]
    # The drift reference: every training row here (fewer than 10,000), the features as trained on, and
    # the model's prediction of each.
    features = list(frame.drop(columns=["target"]).columns)
    reference = load_frame(app.extensions["modelyard"].artifacts.read_bytes(version["reference_sha256"]))
    assert list(reference.columns) == features + [REFERENCE_PREDICTION]
    assert len(reference) == version["reference_rows"] and 0.6 * len(frame) < len(reference) < len(frame)
    # Permutation importances: a share per feature, summing to 1.
    assert set(version["feature_importances"]) == set(features)
    assert sum(version["feature_importances"].values()) == pytest.approx(1.0)
    assert min(version["feature_importances"].values()) >= 0
    model_status(client, ds, model["id"], "trained")

    artifact = client.get(f"/api/v1/models/{model['id']}/versions/1/artifact", headers=ds).data
    estimator = loads_trusted(artifact)
    predictions = estimator.predict(reference[features].head(50))
    assert len(predictions) == 50
    # The reference holds the model's predictions (breast cancer's labels are 0 and 1, as their codes are).
    assert reference[REFERENCE_PREDICTION].head(50).tolist() == pytest.approx(predictions.tolist())

    # Monitoring keeps the version's baseline from its model_version.registered event.
    def baseline():
        with app.extensions["modelyard"].db.transaction() as session:
            return session.get(VersionBaseline, (uuid.UUID(model["id"]), 1))

    watched = wait_for(baseline, what="monitoring's baseline of version 1")
    assert (watched.model_type, watched.reference_sha256, watched.reference_rows) == \
        (model_type, version["reference_sha256"], version["reference_rows"])
    assert set(watched.feature_kinds) == set(features) and watched.feature_importances == version["feature_importances"]
    assert watched.metrics == version["metrics"]

    lineage = client.get(f"/api/v1/models/{model['id']}/versions/1/lineage?direction=up", headers=ds).json
    assert {node["type"] for node in lineage["nodes"]} >= {"dataset", "training_job", "model_version"}


def test_a_training_has_its_other_trial_slot_load_the_ml_modules_while_it_checks_the_data(
        client, ds, worker, breast_cancer):
    _, _, accepted = train(client, ds, breast_cancer, "classification", "random", trials=2)
    assert wait_finished(client, ds, accepted["url"])["status"] == "succeeded"
    assert re.search(r"Task hpo\.warm_up\[[^\]]+\] succeeded", worker.log())


def test_a_retraining_names_the_previous_version_as_its_parent(client, ds, breast_cancer):
    model, dataset, first = train(client, ds, breast_cancer, "classification", "random", trials=2)
    assert wait_finished(client, ds, first["url"])["status"] == "succeeded"
    second = request_training(client, ds, model["id"], dataset_id=dataset["id"], estimator="logistic_regression",
                              cross_validation_folds=3, optimization={"strategy": "random", "max_trials": 2})
    job = wait_finished(client, ds, second["url"])
    assert job["parent_version"] == 1 and job["version_number"] == 2
    version = client.get(f"/api/v1/models/{model['id']}/versions/2", headers=ds).json
    assert version["parent_version"] == 1


def test_the_same_request_with_parallelism_one_gives_the_same_trials_and_model(client, ds, breast_cancer):
    runs = []
    dataset = upload_frame(client, ds, breast_cancer, "repro")
    model = create_model(client, ds, type="classification", target_variable="target")
    for _ in range(2):
        accepted = request_training(
            client, ds, model["id"], dataset_id=dataset["id"], estimator="random_forest", cross_validation_folds=3,
            random_state=11, optimization={"strategy": "tpe", "max_trials": 4, "parallelism": 1, "search_space": {
                "n_estimators": {"type": "int", "low": 5, "high": 30},
                "max_depth": {"type": "int", "low": 2, "high": 8}}})
        job = wait_finished(client, ds, accepted["url"])
        assert job["status"] == "succeeded", job
        trials = client.get(f"{accepted['url']}/trials", headers=ds).json["items"]
        runs.append((job, [(t["params"], t["fold_scores"]) for t in trials]))
    (first, first_trials), (second, second_trials) = runs
    assert first_trials == second_trials
    assert first["best_params"] == second["best_params"]
    assert first["test_metrics"] == second["test_metrics"]


def test_a_worker_killed_mid_job_loses_no_finished_trial_and_the_job_completes(client, ds, app, worker, breast_cancer):
    dataset = upload_frame(client, ds, breast_cancer, "resume")
    model = create_model(client, ds, type="classification", target_variable="target")
    accepted = request_training(
        client, ds, model["id"], dataset_id=dataset["id"], estimator="gradient_boosting", cross_validation_folds=3,
        optimization={"strategy": "random", "max_trials": 8, "search_space": {
            "n_estimators": {"type": "int", "low": 60, "high": 120}}})
    db = app.extensions["modelyard"].db

    def trials(state=None):
        with db.transaction() as session:
            query = sa.select(Trial).where(Trial.job_id == uuid.UUID(accepted["id"]))
            if state:
                query = query.where(Trial.state == state)
            return {t.number: (t.state, t.fold_scores) for t in session.scalars(query)}

    wait_for(lambda: trials("complete"), timeout=60, what="a first finished trial")
    wait_for(lambda: trials("running"), timeout=60, what="a running trial")
    finished_before = trials("complete")
    victim = worker.children()[0]
    os.kill(victim, signal.SIGKILL)

    job = wait_finished(client, ds, accepted["url"], timeout=120)
    assert job["status"] == "succeeded", job
    after = trials()
    assert len(after) == 8 and all(state == "complete" for state, _ in after.values())
    for number, (state, folds) in finished_before.items():
        assert after[number] == (state, folds)
    # The pool reaps the killed child on its own schedule: until then /proc still lists it (a zombie).
    wait_for(lambda: victim not in worker.children(), timeout=30, what="the killed child to be reaped")
    assert "signal 9 (SIGKILL)" in worker.log()  # the pool saw its child die mid-task


def test_cancel_stops_the_search_and_registers_nothing(client, ds, breast_cancer):
    dataset = upload_frame(client, ds, breast_cancer, "cancel")
    model = create_model(client, ds, type="classification", target_variable="target")
    accepted = request_training(
        client, ds, model["id"], dataset_id=dataset["id"], estimator="gradient_boosting", cross_validation_folds=5,
        optimization={"strategy": "random", "max_trials": 50})
    wait_for(lambda: client.get(accepted["url"], headers=ds).json["status"] == "running", timeout=30,
             what="the job to run")
    cancelled = client.post(f"{accepted['url']}/cancel", headers=ds)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"

    def settled():
        items = client.get(f"{accepted['url']}/trials?limit=500", headers=ds).json["items"]
        return items if all(t["state"] not in ("queued", "running") for t in items) else None

    items = wait_for(settled, timeout=60, what="running trials to stop")
    assert len(items) < 50 and any(t["state"] == "cancelled" for t in items)
    time.sleep(0.5)
    assert client.get(accepted["url"], headers=ds).json["status"] == "cancelled"
    assert client.get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"] == []
    again = client.post(f"{accepted['url']}/cancel", headers=ds)
    assert again.status_code == 409


def test_a_cancelled_retraining_leaves_the_model_trained_with_the_features_it_was_trained_on(
        client, ds, breast_cancer):
    model, dataset, first = train(client, ds, breast_cancer, "classification", "random", trials=2)
    assert wait_finished(client, ds, first["url"])["status"] == "succeeded"
    model_status(client, ds, model["id"], "trained")
    features = [column for column in breast_cancer.columns if column != "target"]
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["features"] == features

    second = request_training(client, ds, model["id"], dataset_id=dataset["id"], estimator="gradient_boosting",
                              cross_validation_folds=5, optimization={"strategy": "random", "max_trials": 50})
    model_status(client, ds, model["id"], "training", timeout=30)
    cancelled = client.post(f"{second['url']}/cancel", headers=ds)
    assert cancelled.status_code == 200 and (cancelled.json["status"], cancelled.json["phase"]) == ("cancelled", None)
    model_status(client, ds, model["id"], "trained")
    assert client.get(second["url"], headers=ds).json["phase"] is None


@pytest.mark.parametrize("target, reason", [
    (["a"] * 40, "only one class"),
    ([""] * 40, "empty in all"),
])
def test_a_csv_that_parses_but_cannot_train_fails_the_job_with_a_readable_message(client, ds, target, reason):
    import pandas as pd

    frame = pd.DataFrame({"x": range(40), "y": [i % 3 for i in range(40)], "target": target})
    response = client.post("/api/v1/datasets", data={"file": (io.BytesIO(csv_bytes(frame)), "bad.csv")},
                           headers=ds, content_type="multipart/form-data")
    model = create_model(client, ds, type="classification", target_variable="target")
    accepted = request_training(client, ds, model["id"], dataset_id=response.json["id"],
                                estimator="logistic_regression", cross_validation_folds=3,
                                optimization={"max_trials": 2})
    job = wait_finished(client, ds, accepted["url"])
    assert job["status"] == "failed" and reason in job["error"]
    assert job["version_number"] is None and job["phase"] is None
    model_status(client, ds, model["id"], "failed")
    assert client.get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"] == []
