"""Models to deploy, and the requests that deploy them and follow a rollout to its end."""

from __future__ import annotations

import functools
from typing import Any

from flask.testing import FlaskClient

from tests.support.polling import wait_for
from tests.support.registry import create_model, upload_version

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ENDED = ("live", "failed", "rolled_back", "superseded")
# Health checks that pass in well under a second: the point of most tests is what happens after.
QUICK = {"health_check_config": {"timeout": 5, "success_threshold": 2, "failure_threshold": 2}}

# The brief's example 3 as it is written there: its four configs, every value given.
EXAMPLE_3 = {
    "environment": "production",
    "deployment_config": {"resources": {"memory": "2Gi", "cpu": "1"}, "replicas": 3, "timeout": 30},
    "health_check_config": {"endpoint": "/health", "interval": 30, "timeout": 10, "retries": 3,
                            "success_threshold": 1, "failure_threshold": 3},
    "scaling_config": {"min_replicas": 2, "max_replicas": 10, "target_cpu_utilization": 70,
                       "target_memory_utilization": 80, "scale_up_cooldown": 300, "scale_down_cooldown": 300},
    "monitoring_config": {"enable_metrics": True, "enable_logging": True, "enable_tracing": True,
                          "alert_thresholds": {"cpu": 80, "memory": 85, "error_rate": 5, "latency": 1000}},
}


@functools.cache
def skops_model(seed: int = 0, *, shuffled: bool = False) -> bytes:
    """A logistic regression on iris, fitted on a frame of FEATURES, as a skops file (what users upload);
    `shuffled`: fitted on shuffled labels, so it is right about a third of the time."""
    import numpy as np
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target")
    frame.columns = FEATURES
    labels = np.random.default_rng(seed).permutation(iris.target) if shuffled else iris.target
    model = LogisticRegression(max_iter=200 + seed, random_state=seed).fit(frame, labels)
    return skops.io.dumps(model)


def iris_row(**changes: Any) -> dict[str, Any]:
    return {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, **changes}


def model_with_versions(client: FlaskClient, headers: dict, count: int = 1, **fields) -> dict:
    model = create_model(client, headers, features=FEATURES, **fields)
    for seed in range(count):
        response = upload_version(client, headers, model["id"], skops_model(seed), filename="model.skops")
        assert response.status_code == 201, response.json
    return model


def deploy(client: FlaskClient, headers: dict, model_id: str, **body) -> dict:
    response = client.post(f"/api/v1/models/{model_id}/deployments",
                           json={"environment": "production", **QUICK, **body}, headers=headers)
    assert response.status_code == 202, response.json
    return response.json


def wait_ended(client: FlaskClient, headers: dict, deployment: dict, timeout: float = 60.0) -> dict:
    def ended():
        found = client.get(deployment["url"], headers=headers).json
        return found if found["status"] in ENDED else None

    return wait_for(ended, timeout=timeout, what=f"deployment {deployment['id']} to end")


class Misbehaving:
    """A model that answers the health check's rows (all zeros, for a version without a profile) and
    misbehaves on real traffic: it fails, or takes `delay` seconds. Pickled for tests that allow pickle."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def predict(self, frame):
        import time

        import numpy as np

        real = bool(np.asarray(frame, dtype=float).any())
        if real and not self.delay:
            raise RuntimeError("this version breaks on real traffic")
        if real:
            time.sleep(self.delay)
        return np.zeros(len(frame))


def pickled(model: object) -> bytes:
    import pickle

    return pickle.dumps(model)
