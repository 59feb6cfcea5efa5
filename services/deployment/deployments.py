"""Use cases of the control plane: ask for a deployment, read it, list them, roll one back; and the
endpoints' views (what is live, what is coming, what served when).

A request only validates and records: the rollout itself runs in Celery tasks (rollout.py) on the
`deploy` queue, sent after the request's transaction commits. Everything visible now is checked
here, so a bad request is a 404/409/422 and nothing is stored or moved.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment import observation, traffic
from services.deployment.service import ROLL_OUT
from services.deployment.tables import (
    AB_ARM, FAILED, IN_PROGRESS, LIVE, PENDING, ROLLED_BACK, SERVING, SUPERSEDED, Deployment, Endpoint, Transition,
)
from shared import audit
from shared.auth import Actor
from shared.db import select_for_update, utcnow
from shared.errors import Conflict, IntegrityFailure, NotFound
from shared.events.outbox import emit
from shared.pagination import Page, Sorting, paginate
from shared.registry_client import RegistryClient
from shared.tasks import enqueue_after_commit

PRODUCER = traffic.PRODUCER
CHAMPION = "champion"
DEPLOYMENT_SORTING = Sorting(columns={"created_at": Deployment.created_at}, tiebreaker=Deployment.id,
                             default="-created_at")
NAME_LENGTH = 63
# How long a queued rollout task may go unheard of before the sweep (rollout.redispatch) sends it again.
TASK_GRACE = timedelta(seconds=60)


# ---- naming ---------------------------------------------------------------------------------------

def endpoint_name(model_name: str, environment: str) -> str:
    """`<model-name-slug>-<environment>`, a DNS-1035 label (Kubernetes names its Service with it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-") or "model"
    if not slug[0].isalpha():
        slug = "m-" + slug
    slug = slug[: NAME_LENGTH - len(environment) - 1].rstrip("-")
    return f"{slug}-{environment}"


def _endpoint_for(session: Session, model: dict[str, Any], environment: str) -> Endpoint:
    """The model's endpoint in this environment, created on its first deployment, locked until commit."""
    model_id = uuid.UUID(model["id"])
    lookup = sa.select(Endpoint).where(Endpoint.model_id == model_id, Endpoint.environment == environment)
    endpoint = session.scalar(select_for_update(session, lookup))
    if endpoint is not None:
        return endpoint
    name = endpoint_name(model["name"], environment)
    if session.scalar(sa.select(Endpoint.id).where(Endpoint.name == name)) is not None:
        # Two models whose names slug alike ("Churn v2" and "churn-v2"): the later one's name carries its id.
        suffix = f"-{model_id.hex[:8]}-{environment}"
        name = name.removesuffix(f"-{environment}")[: NAME_LENGTH - len(suffix)].rstrip("-") + suffix
    endpoint = Endpoint(id=uuid.uuid4(), name=name, model_id=model_id, environment=environment, created_at=utcnow())
    session.add(endpoint)
    session.flush()
    return endpoint


# ---- transitions ----------------------------------------------------------------------------------

def transition(session: Session, deployment: Deployment, status: str, reason: str) -> None:
    """Move a deployment to `status`, keeping the move and its reason; ended states stamp `ended_at`."""
    now = utcnow()
    session.add(Transition(deployment_id=deployment.id, from_status=deployment.status, to_status=status,
                           reason=reason, at=now))
    deployment.status, deployment.reason, deployment.updated_at = status, reason, now
    if status in (FAILED, ROLLED_BACK, SUPERSEDED):
        deployment.ended_at = now
        deployment.next_action_at = None


def outcome_payload(deployment: Deployment, endpoint: Endpoint, *, model_live: bool, **extra: Any) -> dict[str, Any]:
    """An outcome event's payload; `model_live`: whether any version of the model is live anywhere after it."""
    return {"deployment_id": deployment.id, "model_id": deployment.model_id, "version": deployment.version,
            "endpoint": endpoint.name, "environment": endpoint.environment, "status": deployment.status,
            "reason": deployment.reason, "model_live": model_live, **extra}


def fail(session: Session, deployment: Deployment, endpoint: Endpoint, reason: str) -> None:
    """End a rollout before any traffic moved to it: the live version is untouched."""
    transition(session, deployment, FAILED, reason)
    emit(session, "deployment.failed",
         outcome_payload(deployment, endpoint, model_live=model_live(session, deployment.model_id)),
         producer=PRODUCER)
    _arm_ended(session, deployment, reason)


def _arm_ended(session: Session, deployment: Deployment, reason: str) -> None:
    if deployment.strategy == AB_ARM:
        from services.deployment import ab_tests  # which builds on this module

        ab_tests.arm_ended(session, deployment, reason)


def model_live(session: Session, model_id: uuid.UUID) -> bool:
    return session.scalar(sa.select(sa.func.count()).select_from(Deployment).where(
        Deployment.model_id == model_id, Deployment.status.in_(SERVING))) > 0


# ---- requesting -----------------------------------------------------------------------------------

def _version_to_deploy(registry: RegistryClient, model_id: str, number: int | None) -> dict[str, Any]:
    if number is not None:
        version = registry.version(model_id, number)
        if version is None:
            raise NotFound(f"The model has no version {number}.")
        return version
    version = registry.alias(model_id, CHAMPION) or registry.version(model_id, "latest")
    if version is None:
        raise Conflict("The model has no version to deploy: register or train one first.")
    return version


def request_deployment(*, session: Session, actor: Actor, request_id: str, registry: RegistryClient,
                       check_artifact: Callable[[str], None], queue: str, model_ref: str,
                       body: dict[str, Any]) -> Deployment:
    """Validate and record a deployment, and queue its rollout on `queue`; `check_artifact(sha256)` (the
    artifact store's verify) raises unless the version's artifact is stored intact."""
    model = registry.model(model_ref)
    if model["status"] == "archived":
        raise Conflict("The model is archived: restore it before deploying.")
    if not model.get("features"):
        raise Conflict("The model names no features, so its predictions cannot be validated: set its "
                       "`features` (PATCH the model) before deploying.")
    version = _version_to_deploy(registry, model["id"], body["version"])
    if version["status"] == "archived":
        raise Conflict(f"Version {version['number']} is archived: restore it before deploying.")
    try:
        check_artifact(version["artifact_sha256"])
    except (IntegrityFailure, NotFound) as exc:
        raise Conflict(f"Version {version['number']}'s artifact fails its integrity check: {exc.detail}") from exc
    endpoint = _endpoint_for(session, model, body["environment"])
    busy = session.scalar(sa.select(Deployment).where(Deployment.endpoint_id == endpoint.id,
                                                      Deployment.status.in_(IN_PROGRESS)).limit(1))
    if busy is not None:
        raise Conflict(f"Deployment {busy.id} of version {busy.version} is still {busy.status} on endpoint "
                       f"{endpoint.name}: wait for it, or roll it back.")
    live = session.scalar(sa.select(Deployment).where(Deployment.endpoint_id == endpoint.id,
                                                      Deployment.status == LIVE).limit(1))
    canary = body["canary"] or {"steps": [100], "pause_seconds": 0.0}  # blue-green: one step, all at once
    deployment = new_deployment(
        session, endpoint=endpoint, model_id=endpoint.model_id, version=version, features=model["features"],
        strategy=body["strategy"], steps=canary["steps"], pause_seconds=canary["pause_seconds"],
        config={key: body[key] for key in ("deployment_config", "health_check_config", "scaling_config",
                                           "monitoring_config")},
        previous=live, actor_name=actor.name, actor_id=actor.id, reason=f"requested by {actor.name}")
    audit.record_change(session, actor=actor, action="deployment.requested", resource_type="deployment",
                        resource_id=deployment.id, request_id=request_id,
                        after={"endpoint": endpoint.name, "version": deployment.version,
                               "strategy": deployment.strategy})
    enqueue_after_commit(session, ROLL_OUT, str(deployment.id), queue=queue)
    deployment.endpoint_name = endpoint.name
    return deployment


def new_deployment(session: Session, *, endpoint: Endpoint, model_id: uuid.UUID, version: dict[str, Any],
                   features: list[str], strategy: str, steps: list[float], pause_seconds: float, config: dict[str, Any],
                   previous: Deployment | None, actor_name: str, actor_id: str | None, reason: str) -> Deployment:
    """A pending deployment of the registry's `version` (of `model_id`, whose `features` it validates) on
    `endpoint`, announced (deployment.started); its rollout task is the caller's to send."""
    now = utcnow()
    deployment = Deployment(
        id=uuid.uuid4(), endpoint_id=endpoint.id, model_id=model_id, version=version["number"],
        artifact_sha256=version["artifact_sha256"], flavor=version.get("format") or version.get("flavor"),
        features=list(features), profile=version.get("profile"), strategy=strategy, steps=list(steps),
        step_pause_seconds=pause_seconds, step=-1, config=config, status=PENDING,
        previous_id=previous.id if previous else None, health=[], requested_by=actor_name, requested_by_id=actor_id,
        created_at=now, updated_at=now, next_action_at=now + TASK_GRACE)
    session.add(deployment)
    session.add(Transition(deployment_id=deployment.id, from_status=None, to_status=PENDING, reason=reason, at=now))
    emit(session, "deployment.started", {
        "deployment_id": deployment.id, "model_id": deployment.model_id, "version": deployment.version,
        "endpoint": endpoint.name, "environment": endpoint.environment, "strategy": deployment.strategy,
        "actor": actor_name, "actor_id": actor_id,
    }, producer=PRODUCER)
    return deployment


# ---- reading --------------------------------------------------------------------------------------

def _named(session: Session, deployments: list[Deployment]) -> list[Deployment]:
    endpoints = {row.id: row for row in session.execute(sa.select(Endpoint.id, Endpoint.name, Endpoint.environment).where(
        Endpoint.id.in_({d.endpoint_id for d in deployments})))} if deployments else {}
    for deployment in deployments:
        endpoint = endpoints.get(deployment.endpoint_id)
        deployment.endpoint_name = endpoint.name if endpoint else None
        deployment.environment = endpoint.environment if endpoint else None
    return deployments


def _with_transitions(session: Session, deployments: list[Deployment]) -> list[Deployment]:
    """The deployments, each with its transitions in the order they happened."""
    by_deployment: dict[uuid.UUID, list[Transition]] = {deployment.id: [] for deployment in deployments}
    if by_deployment:
        for step in session.scalars(sa.select(Transition).where(Transition.deployment_id.in_(by_deployment))
                                    .order_by(Transition.at, Transition.id)):
            by_deployment[step.deployment_id].append(step)
    for deployment in deployments:
        deployment.transitions = by_deployment[deployment.id]
    return deployments


def get_deployment(*, session: Session, deployment_id: uuid.UUID, for_update: bool = False) -> Deployment:
    statement = sa.select(Deployment).where(Deployment.id == deployment_id)
    deployment = session.scalar(select_for_update(session, statement) if for_update else statement)
    if deployment is None:
        raise NotFound(f"No deployment with id {deployment_id}.")
    return _named(session, _with_transitions(session, [deployment]))[0]


def list_deployments(*, session: Session, registry: RegistryClient, model_ref: str, status: str | None,
                     limit: int, cursor: str | None, sort: str | None) -> Page:
    model = registry.model(model_ref)
    statement = sa.select(Deployment).where(Deployment.model_id == uuid.UUID(model["id"]))
    if status:
        statement = statement.where(Deployment.status == status)
    page = paginate(session, statement, sorting=DEPLOYMENT_SORTING, limit=limit, cursor=cursor, sort=sort)
    # Each with its transitions, read in one query for the page: a timeline of the model's deployments (the
    # dashboards draw one) needs no request per deployment.
    _named(session, _with_transitions(session, page.items))
    return page


# ---- rolling back ---------------------------------------------------------------------------------

def roll_back(session: Session, deployment: Deployment, *, reason: str) -> None:
    """Return the endpoint's traffic to the deployment live before `deployment`, at once.

    Before any traffic moved there is nothing to return: the rollout just ends as failed.
    """
    endpoint = session.get(Endpoint, deployment.endpoint_id)
    if deployment.status not in SERVING:
        fail(session, deployment, endpoint, reason)
        return
    previous = session.get(Deployment, deployment.previous_id) if deployment.previous_id else None
    routes = [traffic.route(previous.id, previous.version, 100)] if previous else []
    traffic.switch(session, endpoint, routes, reason=f"rollback of version {deployment.version}: {reason}",
                   deployment_id=deployment.id)
    transition(session, deployment, ROLLED_BACK, reason)
    if previous is not None and previous.status == SUPERSEDED:
        transition(session, previous, LIVE, f"live again: version {deployment.version} was rolled back")
        previous.ended_at = None
    live = previous if previous is not None and previous.status == LIVE else None
    emit(session, "deployment.rolled_back",
         outcome_payload(deployment, endpoint, model_live=model_live(session, deployment.model_id),
                         previous_version=previous.version if previous else None,
                         live_deployment_id=live.id if live else None,
                         live_alert_thresholds=live.config["monitoring_config"]["alert_thresholds"] if live else None),
         producer=PRODUCER)
    _arm_ended(session, deployment, reason)


def request_rollback(*, session: Session, actor: Actor, request_id: str, deployment_id: uuid.UUID) -> Deployment:
    deployment = get_deployment(session=session, deployment_id=deployment_id, for_update=True)
    if deployment.status not in (*IN_PROGRESS, LIVE):
        raise Conflict(f"Deployment {deployment.id} is {deployment.status}: there is nothing to roll back.")
    if deployment.status == LIVE and deployment.previous_id is None:
        raise Conflict("This is the endpoint's first deployment: there is no earlier version to return to.")
    before = {"status": deployment.status}
    roll_back(session, deployment, reason=f"rolled back by {actor.name}")
    audit.record_change(session, actor=actor, action="deployment.rolled_back", resource_type="deployment",
                        resource_id=deployment.id, request_id=request_id, before=before,
                        after={"status": deployment.status})
    return get_deployment(session=session, deployment_id=deployment_id)


# ---- endpoints ------------------------------------------------------------------------------------

def get_endpoint(session: Session, name: str) -> Endpoint:
    endpoint = session.scalar(sa.select(Endpoint).where(Endpoint.name == name))
    if endpoint is None:
        raise NotFound(f"No endpoint is named {name!r}.")
    return endpoint


def describe_endpoint(session: Session, endpoint: Endpoint, url: str) -> dict[str, Any]:
    """Live version, candidate, the traffic in effect and any switch written ahead."""
    now = utcnow()
    rows = session.scalars(sa.select(Deployment).where(Deployment.endpoint_id == endpoint.id,
                                                       Deployment.status.in_((*IN_PROGRESS, LIVE))))
    live = candidate = None
    for deployment in rows:
        if deployment.status == LIVE:
            live = deployment
        else:
            candidate = deployment
    served = traffic.served_at(session, endpoint.id, now)
    ahead = traffic.ahead(session, endpoint.id, now)
    return {"name": endpoint.name, "model_id": endpoint.model_id, "environment": endpoint.environment, "url": url,
            "live_version": live.version if live else None, "live_deployment_id": live.id if live else None,
            "candidate_version": candidate.version if candidate else None,
            "candidate_deployment_id": candidate.id if candidate else None,
            "traffic": served.change, "pending_traffic": ahead[-1] if ahead else None,
            "scaling_config": live.config["scaling_config"] if live else None,
            "replicas": observation.replicas(session, endpoint.id), "created_at": endpoint.created_at}


def list_endpoints(session: Session, *, limit: int, cursor: str | None, sort: str | None) -> Page:
    sorting = Sorting(columns={"name": Endpoint.name}, tiebreaker=Endpoint.id, default="name")
    return paginate(session, sa.select(Endpoint), sorting=sorting, limit=limit, cursor=cursor, sort=sort)


def history(session: Session, endpoint: Endpoint, at: datetime | None) -> dict[str, Any]:
    at = at or utcnow()
    served = traffic.served_at(session, endpoint.id, at)
    change = served.change
    return {"endpoint": endpoint.name, "at": at, "routes": change.routes if change else [],
            "salt": change.salt if change else None,
            "since": traffic.effective_at(change) if change else None, "until": served.until}


def desired_state(session: Session, endpoint: Endpoint) -> dict[str, Any]:
    """What a serving replica needs: the traffic in effect, the switches ahead, and how to load each
    deployment they name, and whose model it is (an A/B test's arm may be another model's than the
    endpoint's: its predictions are recorded under its own)."""
    now = utcnow()
    changes = [c for c in (traffic.served_at(session, endpoint.id, now).change, *traffic.ahead(session, endpoint.id, now))
               if c is not None]
    ids = {uuid.UUID(r["deployment_id"]) for c in changes for r in c.routes}
    deployments = session.scalars(sa.select(Deployment).where(Deployment.id.in_(ids))) if ids else []
    return {
        "endpoint": endpoint.name, "model_id": str(endpoint.model_id), "now": now.isoformat(),
        "changes": [{"effective_at": traffic.effective_at(c).isoformat(), "routes": c.routes, "salt": c.salt}
                    for c in changes],
        "deployments": {str(d.id): {"model_id": str(d.model_id), "version": d.version,
                                    "artifact_sha256": d.artifact_sha256, "flavor": d.flavor, "features": d.features,
                                    "profile": d.profile, "timeout": d.config["deployment_config"]["timeout"]}
                        for d in deployments},
    }
