"""The one use case of the data plane: answer a prediction request on an endpoint.

Which version answers is decided per unit (the request's `unit_id`, else its `request_id`): a stable
hash places the unit in [0, 100) and the endpoint's routes share that range by weight, so during a
canary a user keeps meeting the same version. The hash is salted with the traffic's salt (an A/B
test's id) or else the endpoint's name. A request naming neither is placed at random. Each
prediction is recorded under the model of the deployment that answered: an A/B test's arm may be
another model's than the endpoint's.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from services.serving.instances import validate_instances
from services.serving.mirror import Mirror
from services.serving.prediction_log import PredictionLog
from services.serving.replica import NothingLive, Replica, Route, bucket, choose
from services.serving.window import ServingStats
from shared.errors import DomainError, ValidationFailed
from shared.prediction_records import prediction_record


class PredictionFailed(DomainError):
    """The model raised on rows that passed validation: the version is at fault, not the request."""

    status, title, slug = 500, "Prediction failed", "prediction-failed"


class VersionUnavailable(DomainError):
    status, title, slug = 503, "Version unavailable", "version-unavailable"


def _request_ids(given: str | None, count: int) -> list[str]:
    """The request's id for one row, `<id>-<row>` for several; a generated id is a uuid4 per request (one
    per row cost a prediction of 1,000 rows a twentieth of its time)."""
    request_id = given or str(uuid.uuid4())
    return [request_id] if count == 1 else [f"{request_id}-{index}" for index in range(count)]


def predict(*, replica: Replica, stats: ServingStats, prediction_log: PredictionLog, mirror: Mirror, endpoint: str,
            body: dict[str, Any], max_rows: int) -> dict[str, Any]:
    """Answer with the version the request's unit meets; every row is handed to the prediction log. A shadow
    route (a shadow A/B test's B) gets a copy of the request on the mirror's thread, recorded under the same
    request ids, unit and time, and never returned."""
    desired = replica.desired(endpoint)
    change = desired.in_effect(time.time())
    if change is None or not change.routes:
        raise NothingLive(f"Nothing is live on endpoint {endpoint!r}: deploy a version first.")
    unit = body.get("unit_id") or body.get("request_id")
    route = choose(change.routes, bucket(change.salt or endpoint, unit) if unit else random.random() * 100.0)
    deployment = desired.deployments[route.deployment_id]
    rows, predictions, probabilities, seconds = _answer(replica, stats, endpoint, route, deployment,
                                                        body.get("instances"), max_rows)
    request = _Request(endpoint, _request_ids(body.get("request_id"), len(rows)), body.get("unit_id"),
                       datetime.now(timezone.utc))
    prediction_log.add(request.records(deployment, route, rows, predictions, probabilities, seconds))
    for shadow in change.shadows:
        mirror.submit(functools.partial(_shadow, replica, stats, prediction_log, request, shadow,
                                        desired.deployments[shadow.deployment_id], body.get("instances"), max_rows))
    answer = {"predictions": predictions, "model_id": deployment["model_id"], "model_version": route.version,
              "request_ids": request.ids, "endpoint": endpoint}
    if probabilities is not None:
        answer["probabilities"] = probabilities
    return answer


def _answer(replica: Replica, stats: ServingStats, endpoint: str, route: Route, deployment: dict[str, Any],
            instances: Any, max_rows: int) -> tuple[list[dict], list, list | None, float]:
    """The version's predictions for the instances, and how long they took; each attempt counted in `stats`;
    the error a client gets when the instances or the version fail."""
    try:
        model = replica.model(deployment)
    except Exception as exc:  # health checks load the same bytes, so this is an artifact store or memory fault
        stats.record(endpoint, route.deployment_id, route.version, 0.0, True)
        raise VersionUnavailable(f"Version {route.version} cannot be loaded by this replica: {exc}") from exc
    rows = validate_instances(instances, features=model.features, kinds=model.kinds, max_rows=max_rows,
                              nullable=model.nullable)
    started = time.perf_counter()
    try:
        predictions, probabilities = model.predict(rows)
    except (ValueError, TypeError) as exc:
        # An uploaded model may refuse values the profile could not describe (no profile: no kinds).
        stats.record(endpoint, route.deployment_id, route.version, time.perf_counter() - started, False, len(rows))
        raise ValidationFailed(f"Version {route.version} refused the instances: {exc}",
                               errors={"instances": [str(exc)]}) from exc
    except Exception as exc:
        stats.record(endpoint, route.deployment_id, route.version, time.perf_counter() - started, True, len(rows))
        raise PredictionFailed(f"Version {route.version} failed to predict: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - started
    stats.record(endpoint, route.deployment_id, route.version, seconds, False, len(rows))
    return rows, predictions, probabilities, seconds


@dataclass(frozen=True)
class _Request:
    """What a request's records share, whichever version made them."""

    endpoint: str
    ids: list[str]
    unit_id: str | None
    at: datetime

    def records(self, deployment: dict[str, Any], route: Route, rows: list[dict], predictions: list,
                probabilities: list | None, seconds: float) -> list[dict[str, Any]]:
        return [prediction_record(model_id=deployment["model_id"], version=route.version, request_id=request_id,
                                  predicted_at=self.at, prediction=prediction, endpoint=self.endpoint,
                                  deployment_id=route.deployment_id, unit_id=self.unit_id, features=row,
                                  probabilities=probabilities[index] if probabilities is not None else None,
                                  latency_ms=seconds * 1000.0)
                for index, (request_id, row, prediction) in enumerate(zip(self.ids, rows, predictions))]

    def failures(self, deployment: dict[str, Any], route: Route, error: str) -> list[dict[str, Any]]:
        return [prediction_record(model_id=deployment["model_id"], version=route.version, request_id=request_id,
                                  predicted_at=self.at, endpoint=self.endpoint, deployment_id=route.deployment_id,
                                  unit_id=self.unit_id, error=error)
                for request_id in self.ids]


def _shadow(replica: Replica, stats: ServingStats, prediction_log: PredictionLog, request: _Request, route: Route,
            deployment: dict[str, Any], instances: Any, max_rows: int) -> None:
    """A shadow version's answer to a copy of a request, recorded. No client sees its failures, so they are
    recorded too: the A/B test counts them in B's error rate."""
    try:
        rows, predictions, probabilities, seconds = _answer(replica, stats, request.endpoint, route, deployment,
                                                            instances, max_rows)
    except DomainError as exc:
        prediction_log.add(request.failures(deployment, route, f"{exc.title}: {exc.detail}"))
        return
    prediction_log.add(request.records(deployment, route, rows, predictions, probabilities, seconds))
