"""Deployments, the endpoints they make, predictions, and A/B tests between models."""

from __future__ import annotations

import math
import time
from typing import Any, Iterator
from urllib.parse import quote

from modelyard.client.http import Transport
from modelyard.client.registry import model_path
from modelyard.client.results import ABResults, ABTest, Deployment, Endpoint, Prediction

ROLLOUT_ENDED = frozenset({"live", "failed", "rolled_back", "superseded"})


class Deployments:
    def __init__(self, http: Transport):
        self._http = http

    def deploy(self, model: str, environment: str, *, version: int | None = None, wait: bool = False,
               timeout: float = 300, **configs: Any) -> Deployment:
        """Deploy a version (default: the champion's, else the latest) to `environment`, with the
        brief's example 3's configs (deployment_config, health_check_config, scaling_config,
        monitoring_config; strategy, canary). With `wait`, follow the rollout until it is live or ended."""
        body = {"environment": environment, **configs}
        if version is not None:
            body["version"] = version
        accepted = self._http.post(model_path(model) + "/deployments", body)
        return self.wait(accepted["id"], timeout=timeout) if wait else self.get(accepted["id"])

    def get(self, deployment_id: str) -> Deployment:
        return Deployment.from_json(self._http.get(f"/deployments/{deployment_id}"))

    def list(self, model: str, *, status: str | None = None) -> Iterator[Deployment]:
        for item in self._http.pages(model_path(model) + "/deployments", status=status):
            yield Deployment.from_json(item)

    def wait(self, deployment_id: str, *, timeout: float = 300, poll: float = 1.0) -> Deployment:
        """Poll until the rollout is live, failed or rolled back; the deployment then."""
        for deployment in self.follow(deployment_id, timeout=timeout, poll=poll):
            pass
        return deployment

    def follow(self, deployment_id: str, *, timeout: float = 300, poll: float = 1.0) -> Iterator[Deployment]:
        """The deployment each time its status changes, until its rollout ended; TimeoutError past `timeout`."""
        deadline, seen = time.monotonic() + timeout, None
        while True:
            deployment = self.get(deployment_id)
            if deployment.status != seen:
                seen = deployment.status
                yield deployment
            if deployment.status in ROLLOUT_ENDED:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployment {deployment_id} still {deployment.status} after {timeout} s")
            time.sleep(poll)

    def rollback(self, deployment_id: str) -> Deployment:
        """Return the endpoint to the version live before this deployment."""
        return Deployment.from_json(self._http.post(f"/deployments/{deployment_id}/rollback"))


class Endpoints:
    def __init__(self, http: Transport):
        self._http = http

    def get(self, name: str) -> Endpoint:
        return Endpoint.from_json(self._http.get("/endpoints/" + quote(name, safe="")))

    def list(self) -> Iterator[Endpoint]:
        for item in self._http.pages("/endpoints"):
            yield Endpoint.from_json(item)

    def predict(self, name: str, rows: Any, *, request_id: str | None = None,
                unit_id: str | None = None) -> Prediction:
        """Predict `rows` (a list of {feature: value}, or a pandas DataFrame) with the endpoint's live version.

        Not retried: every prediction is recorded, and a repeat would be recorded again.
        """
        body: dict[str, Any] = {"instances": instances(rows)}
        if request_id:
            body["request_id"] = request_id
        if unit_id:
            body["unit_id"] = unit_id
        return Prediction.from_json(self._http.post(f"/endpoints/{quote(name, safe='')}/predict", body))


def instances(rows: Any) -> list[dict]:
    """Rows as JSON objects: a DataFrame's records (numpy scalars as Python numbers), its missing values
    as null, which the server takes where the training data had missing values (NaN it refuses)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame, without importing pandas
        rows = rows.to_dict(orient="records")
    return [{key: _plain(value) for key, value in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class ABTests:
    def __init__(self, http: Transport):
        self._http = http

    def create(self, name: str, model_a_id: str, model_b_id: str, **definition: Any) -> ABTest:
        """Define a test in draft: the brief's example 4's fields (traffic_split, success_metrics,
        guardrail_metrics, min_sample_size, significance_level, test_config ...)."""
        body = {"name": name, "model_a_id": model_a_id, "model_b_id": model_b_id, **definition}
        return ABTest.from_json(self._http.post("/ab-tests", body, idempotent_post=True))

    def get(self, test_id: str) -> ABTest:
        return ABTest.from_json(self._http.get(f"/ab-tests/{test_id}"))

    def list(self, *, status: str | None = None) -> Iterator[ABTest]:
        for item in self._http.pages("/ab-tests", status=status):
            yield ABTest.from_json(item)

    def start(self, test_id: str) -> ABTest:
        return ABTest.from_json(self._http.post(f"/ab-tests/{test_id}/start"))

    def stop(self, test_id: str) -> ABTest:
        return ABTest.from_json(self._http.post(f"/ab-tests/{test_id}/stop"))

    def results(self, test_id: str) -> ABResults:
        """The latest figures: units per arm, each metric of B against A, and the decision."""
        return ABResults.from_json(self._http.get(f"/ab-tests/{test_id}/results"))
