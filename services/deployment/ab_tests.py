"""Use cases of A/B tests: define one (a draft), read them, list them.

A definition names both arms as fixed versions, resolved when it is made, so what the test compares never
changes under it: the registry is asked here and its answer kept. Everything that can be checked now is:
a bad definition is a 404/409/422 and nothing is stored.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment import ab_metrics
from services.deployment.deployments import CHAMPION
from services.deployment.tables import DRAFT, LIVE, ABTest, Deployment, Endpoint
from shared import audit
from shared.auth import Actor
from shared.db import utcnow
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.pagination import Page, Sorting, paginate
from shared.registry_client import RegistryClient

SORTING = Sorting(columns={"created_at": ABTest.created_at, "name": ABTest.name}, tiebreaker=ABTest.id,
                  default="-created_at")
# The power a planned sample is checked for, as a fixed-horizon test has it (the sequential test needs more).
POWER = 0.8


def _live_version(session: Session, model_id: str, environment: str) -> int | None:
    return session.scalar(sa.select(Deployment.version).join(Endpoint, Endpoint.id == Deployment.endpoint_id).where(
        Endpoint.model_id == uuid.UUID(model_id), Endpoint.environment == environment, Deployment.status == LIVE,
        Deployment.model_id == uuid.UUID(model_id)).limit(1))


def _arm(registry: RegistryClient, model: dict[str, Any], number: int | None, field: str) -> dict[str, Any]:
    """The version an arm compares: `number`, else the champion's, else the latest."""
    if number is not None:
        version = registry.version(model["id"], number)
        if version is None:
            raise ValidationFailed(f"Model {model['name']!r} has no version {number}.",
                                   errors={field: [f"Model {model['name']!r} has no version {number}."]})
    else:
        version = registry.alias(model["id"], CHAMPION) or registry.version(model["id"], "latest")
        if version is None:
            raise Conflict(f"Model {model['name']!r} has no version to test: register or train one first.")
    if version["status"] == "archived":
        raise Conflict(f"Version {version['number']} of model {model['name']!r} is archived: restore it first.")
    return version


def _model(registry: RegistryClient, ref: str) -> dict[str, Any]:
    model = registry.model(ref)
    if model["status"] == "archived":
        raise Conflict(f"Model {model['name']!r} is archived: restore it before testing it.")
    return model


def _warnings(version_a: dict[str, Any], metric: str, *, mde: float, alpha: float, ratio: float,
              min_sample_size: int) -> list[str]:
    """Whether min_sample_size can detect a relative change of `mde` in the first success metric, when it is a
    rate with a baseline in version A's metrics (its test split's)."""
    if metric not in ab_metrics.CLASSIFICATION:
        return []
    baseline = (version_a.get("metrics") or {}).get(f"test_{metric}", (version_a.get("metrics") or {}).get(metric))
    if not isinstance(baseline, (int, float)) or not 0 < baseline < 1 or not 0 < baseline * (1 - mde) < 1:
        return []
    from shared import ab_statistics

    # A drop is what a test must see: a rise near 1 may be impossible to have at all.
    needed = ab_statistics.sample_size("proportion", baseline_rate=baseline, mde_relative=-mde, alpha=alpha,
                                       power=POWER, ratio=ratio)
    if min_sample_size >= max(needed.n_a, needed.n_b):
        return []
    return [f"min_sample_size {min_sample_size} is too small to detect a {mde:.0%} relative change in {metric} "
            f"(version {version_a['number']}'s is {baseline:.3g}) with {POWER:.0%} power at alpha "
            f"{alpha:g}: that takes {max(needed.n_a, needed.n_b)} units per arm ({needed.total} in all), "
            "and the sequential test about twice as many."]


def create_test(*, session: Session, actor: Actor, request_id: str, registry: RegistryClient,
                body: dict[str, Any]) -> ABTest:
    """Validate and store a definition, in draft."""
    if session.scalar(sa.select(ABTest.id).where(ABTest.name == body["name"])) is not None:
        raise Conflict(f"An A/B test named {body['name']!r} exists.")
    model_a = _model(registry, body["model_a_id"])
    model_b = _model(registry, body["model_b_id"]) if body["model_b_id"] else model_a
    if model_a["type"] != model_b["type"]:
        raise ValidationFailed("Both arms must be models of one type.", errors={
            "model_b_id": [f"Model B is a {model_b['type']} model, model A a {model_a['type']} one."]})
    live = _live_version(session, model_a["id"], body["environment"]) if body["version_a"] is None else None
    version_a = _arm(registry, model_a, body["version_a"] or live, "version_a")
    version_b = _arm(registry, model_b, body["version_b"], "version_b")
    if model_a["id"] == model_b["id"] and version_a["number"] == version_b["number"]:
        raise ValidationFailed(f"Both arms are version {version_a['number']} of one model.",
                               errors={"version_b": [f"Both arms are version {version_a['number']}: name another "
                                                     "version or model for B."]})
    success = ab_metrics.success_metrics(body["success_metrics"], model_a["type"])
    guardrails = ab_metrics.guardrails(body["guardrail_metrics"], model_a["type"])
    split = body["traffic_split"]
    now = utcnow()
    test = ABTest(
        id=uuid.uuid4(), name=body["name"], description=body["description"], type=body["type"],
        model_a_id=uuid.UUID(model_a["id"]), version_a=version_a["number"], model_b_id=uuid.UUID(model_b["id"]),
        version_b=version_b["number"], model_type=model_a["type"], environment=body["environment"],
        traffic_split=split, success_metrics=success, guardrail_metrics=guardrails,
        min_sample_size=body["min_sample_size"], max_duration_days=body["max_duration_days"],
        significance_level=body["significance_level"], mixing_variance=body["mixing_variance"],
        minimum_detectable_effect=body["minimum_detectable_effect"], test_config=body["test_config"],
        auto_promote=body["auto_promote"], status=DRAFT,
        warnings=_warnings(version_a, success[0], mde=body["minimum_detectable_effect"],
                           alpha=body["significance_level"], ratio=1.0 if body["type"] == "shadow" else split / (1 - split),
                           min_sample_size=body["min_sample_size"]),
        created_by=actor.name, created_by_id=actor.id, created_at=now)
    planned = body["test_config"].get("sample_size")
    # Shadow: B sees a copy of every unit A does.
    smallest_arm = planned if body["type"] == "shadow" else planned * min(split, 1 - split) if planned else None
    if smallest_arm is not None and smallest_arm < body["min_sample_size"]:
        test.warnings.append(f"test_config.sample_size {planned} gives an arm about {int(smallest_arm)} units, below "
                             f"min_sample_size {body['min_sample_size']}: the test cannot conclude within its plan.")
    session.add(test)
    session.flush()
    audit.record_change(session, actor=actor, action="ab_test.created", resource_type="ab_test", resource_id=test.id,
                        request_id=request_id, after={"name": test.name, "model_a_id": test.model_a_id,
                                                      "version_a": test.version_a, "model_b_id": test.model_b_id,
                                                      "version_b": test.version_b})
    return test


def get_test(session: Session, test_id: uuid.UUID) -> ABTest:
    test = session.get(ABTest, test_id)
    if test is None:
        raise NotFound(f"No A/B test with id {test_id}.")
    return test


def list_tests(session: Session, *, status: str | None, limit: int, cursor: str | None, sort: str | None) -> Page:
    statement = sa.select(ABTest)
    if status:
        statement = statement.where(ABTest.status == status)
    return paginate(session, statement, sorting=SORTING, limit=limit, cursor=cursor, sort=sort)
