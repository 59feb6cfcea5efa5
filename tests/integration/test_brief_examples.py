"""The product brief's examples 1 and 2 (../shared/BRIEF.md), sent exactly as written, train a model on
real Celery workers: no estimator means a random forest started from the model's hyperparameters."""

from __future__ import annotations

import copy
import os

import pytest

from services.registry.handlers import TrainingOutcomes
from services.training.estimators import ESTIMATORS
from services.training.handlers import VersionRegistrations
from shared.config import load_settings
from shared.model_files import loads_trusted
from tests.conftest import RUN_ID
from tests.support.polling import wait_for
from tests.support.training import celery_worker, churn_frame, csv_bytes, event_pipeline, training_settings

pytestmark = pytest.mark.integration

# Example 1 as the brief writes it, without `created_by` (ours is the caller; see test_registry_models.py).
EXAMPLE_1 = {
    "name": "Customer Churn Predictor", "description": "Predicts customer churn probability",
    "type": "classification", "framework": "scikit_learn",
    "hyperparameters": {"n_estimators": 100, "max_depth": 10, "random_state": 42},
    "features": ["age", "income", "usage_frequency", "support_calls"], "target_variable": "churned",
    "metadata": {"version": "1.0.0", "author": "data-science-team", "business_unit": "customer-success"},
}
# Example 2 exactly as the brief writes it.
EXAMPLE_2 = {
    "training_data_path": "customer_churn_dataset.csv", "validation_split": 0.2, "test_split": 0.1,
    "enable_hyperparameter_optimization": True, "max_trials": 20, "cross_validation_folds": 5,
    "enable_early_stopping": True, "random_state": 42,
    "description": "Training with hyperparameter optimization",
    "preprocessing": {"scaling": "standard", "encoding": "label", "feature_selection": "mutual_info"},
    "augmentation": {"enabled": True, "methods": ["smote", "random_oversampling"]},
}
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    settings = training_settings(database_url, servers, tmp_path_factory.mktemp("brief"), RUN_ID)
    with open(os.path.join(settings["data_root"], EXAMPLE_2["training_data_path"]), "wb") as handle:
        handle.write(csv_bytes(churn_frame()))
    return settings


@pytest.fixture
def settings_overrides(settings):
    """The shared `app`, `client` and `ds` fixtures build on this module's settings."""
    return settings


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory):
    consumers = [TrainingOutcomes(load_settings(settings)), VersionRegistrations()]
    with event_pipeline(load_settings(settings), consumers):
        with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log") as running:
            yield running


def create_example_1(client, headers) -> dict:
    response = client.post("/api/v1/models", json=EXAMPLE_1, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def train(client, headers, model_id, body) -> dict:
    response = client.post(f"/api/v1/models/{model_id}/trainings", json=body, headers=headers)
    assert response.status_code == 202, response.json

    def finished():
        job = client.get(response.json["url"], headers=headers).json
        return job if job["status"] in FINISHED else None

    job = wait_for(finished, timeout=300, what="the brief's training to finish")
    assert job["status"] == "succeeded", job
    return job


def fitted_forest(client, headers, model_id, number):
    pipeline = loads_trusted(client.get(f"/api/v1/models/{model_id}/versions/{number}/artifact",
                                        headers=headers).data)
    return pipeline.named_steps["estimator"]


# On SQLite the README tour sends example 2 as written to make run (tests/e2e/test_readme_tour.py): a minute saved.
@pytest.mark.postgres_only
def test_the_briefs_example_2_trains_example_1s_model_with_a_random_forest_searched_from_its_hyperparameters(
        client, ds):
    model = create_example_1(client, ds)
    job = train(client, ds, model["id"], EXAMPLE_2)

    assert job["estimator"] == "random_forest" and job["strategy"] == "tpe"
    assert job["spec"]["hyperparameters"] == EXAMPLE_1["hyperparameters"]
    assert job["spec"]["max_trials"] == 20 and job["progress"]["trials_total"] == 20
    assert job["spec"]["preprocessing"]["encoding"] == "ordinal"
    assert job["spec"]["preprocessing"]["feature_selection"] == {"method": "mutual_info", "k": None}
    assert job["spec"]["features"] == EXAMPLE_1["features"] and job["spec"]["target"] == "churned"
    # The search varies the forest's default space; random_state is never searched and stays the model's.
    searched = set(ESTIMATORS["random_forest"].default_space("classification"))
    trials = client.get(f"/api/v1/trainings/{job['id']}/trials?limit=100", headers=ds).json["items"]
    assert len(trials) == 20 and all(set(trial["params"]) == searched for trial in trials)
    assert job["best_params"]["random_state"] == 42
    assert set(job["best_params"]) == searched | {"random_state"}

    version = client.get(f"/api/v1/models/{model['id']}/versions/{job['version_number']}", headers=ds).json
    assert version["parameters"] == job["best_params"]
    forest = fitted_forest(client, ds, model["id"], job["version_number"])
    assert type(forest).__name__ == "RandomForestClassifier"
    assert {name: forest.get_params()[name] for name in job["best_params"]} == job["best_params"]


def test_without_a_search_the_one_fit_uses_the_models_hyperparameters(client, ds):
    model = create_example_1(client, ds)
    body = {**copy.deepcopy(EXAMPLE_2), "enable_hyperparameter_optimization": False}
    job = train(client, ds, model["id"], body)

    assert job["progress"]["trials_total"] == 1
    assert job["best_params"] == {"n_estimators": 100, "max_depth": 10, "random_state": 42}
    forest = fitted_forest(client, ds, model["id"], job["version_number"])
    assert type(forest).__name__ == "RandomForestClassifier"
    assert (forest.n_estimators, forest.max_depth, forest.random_state) == (100, 10, 42)
