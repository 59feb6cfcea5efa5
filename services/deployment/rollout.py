"""The rollout state machine, one transaction per step, run by the `deploy` queue's tasks (workers/deploy.py).

pending -> deploying -> health_checking -> [canary, step by step] -> switching -> live, superseding the
deployment live before (`switching`: all traffic goes to the candidate once the switch written ahead
takes effect, so that `live` means every replica serves it); or -> failed, before any traffic moved; or -> rolled_back, after. Each step re-reads the
deployment under a row lock and acts only if it is where the step expects it, so a task delivered
twice (a redelivery, or the stall sweep's re-send) changes nothing the second time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment import traffic
from services.deployment import observation
from services.deployment.deployments import PRODUCER, TASK_GRACE, fail, outcome_payload, roll_back, transition
from services.deployment.service import NEXT_STEP, OBSERVE, ROLL_OUT
from services.deployment.tables import (
    AB_ARM, CANARY_STEPS, DEPLOYING, HEALTH_CHECKING, IN_PROGRESS, LIVE, PENDING, SUPERSEDED, SWITCHING, ABTest,
    Deployment, Endpoint,
)
from shared.db import select_for_update, utcnow
from shared.events.outbox import emit
from shared.tasks import enqueue_after_commit

# A health check in progress is not stalled until the slowest one allowed (schemas.MAX_HEALTH_CHECK_SECONDS)
# would have ended.
STALL_GRACE = timedelta(seconds=600)
# How often a rollout under observation is judged: replicas report at every poll (services/serving/replica.py).
OBSERVE_EVERY_SECONDS = 1.0


def _locked(session: Session, deployment_id: uuid.UUID) -> Deployment | None:
    return session.scalar(select_for_update(session, sa.select(Deployment).where(Deployment.id == deployment_id)))


@dataclass(frozen=True)
class Pace:
    """Where a rollout's next tasks go, and how far ahead its switches are written (the setting
    `switch_ahead_seconds`: longer than the replicas' poll, see traffic.py)."""

    queue: str
    ahead_seconds: float


@dataclass(frozen=True)
class Candidate:
    """What the health check needs, read in the transaction that moved the deployment to health_checking."""

    artifact_sha256: str
    flavor: str | None
    features: list[str]
    profile: dict | None
    config: dict[str, Any]


def begin(session: Session, deployment_id: uuid.UUID) -> Candidate | None:
    """pending -> deploying -> health_checking; None if the deployment is past that (a duplicate task)."""
    deployment = _locked(session, deployment_id)
    if deployment is None or deployment.status not in (PENDING, DEPLOYING, HEALTH_CHECKING):
        return None
    if deployment.status == PENDING:
        transition(session, deployment, DEPLOYING, "a deploy worker took the rollout")
    if deployment.status == DEPLOYING:
        transition(session, deployment, HEALTH_CHECKING,
                   f"fetching version {deployment.version}'s artifact, loading it, and sending smoke predictions")
    deployment.next_action_at = utcnow() + STALL_GRACE
    return Candidate(deployment.artifact_sha256, deployment.flavor, list(deployment.features), deployment.profile,
                     dict(deployment.config))


def health_check(load: Callable[[], Any], smoke_rows: Callable[[Any], list[dict]],
                 config: dict[str, Any]) -> tuple[list[dict], str | None]:
    """Load the candidate and send it smoke predictions until `success_threshold` pass in a row, or
    `failure_threshold` fail. Returns each check's result and the reason it failed (None: passed).

    A prediction passes when it answers within the health check's timeout and the latency threshold.
    A candidate that cannot be loaded fails at once: trying again would load the same bytes.
    """
    checks, thresholds = config["health_check_config"], config["monitoring_config"]["alert_thresholds"]
    budget_ms = min(checks["timeout"] * 1000.0, thresholds["latency"])
    results: list[dict] = []
    try:
        started = time.perf_counter()
        model = load()
        rows = smoke_rows(model)
    except Exception as exc:  # whatever stops a load stops the deployment; its reason is what users need
        detail = str(exc) or type(exc).__name__
        results.append({"at": utcnow().isoformat(), "ok": False, "check": "load", "detail": detail})
        return results, f"the candidate cannot be loaded: {detail}"
    results.append({"at": utcnow().isoformat(), "ok": True, "check": "load",
                    "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)})
    passed = failed = 0
    while passed < checks["success_threshold"]:
        started = time.perf_counter()
        try:
            model.predict(rows)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            ok = elapsed_ms <= budget_ms
            detail = None if ok else f"answered in {elapsed_ms:.1f} ms, over the {budget_ms:g} ms allowed"
        except Exception as exc:  # a smoke prediction that raises is a failed check, whatever it raised
            elapsed_ms, ok, detail = (time.perf_counter() - started) * 1000.0, False, f"{type(exc).__name__}: {exc}"
        results.append({"at": utcnow().isoformat(), "ok": ok, "check": "predict", "rows": len(rows),
                        "latency_ms": round(elapsed_ms, 3), **({"detail": detail} if detail else {})})
        if ok:
            passed += 1
            continue
        passed, failed = 0, failed + 1
        if failed >= checks["failure_threshold"]:
            return results, f"{failed} smoke predictions failed; the last: {detail}"
    return results, None


def checked(session: Session, deployment_id: uuid.UUID, results: list[dict], failure: str | None,
            pace: Pace) -> None:
    """Record the health check: fail the deployment (nothing moved), or move the first traffic."""
    deployment = _locked(session, deployment_id)
    if deployment is None or deployment.status != HEALTH_CHECKING:
        return
    deployment.health = results
    endpoint = session.get(Endpoint, deployment.endpoint_id)
    if failure is not None:
        fail(session, deployment, endpoint, f"health check failed: {failure}")
        return
    _move_traffic(session, deployment, endpoint, 0, pace)


def advance(session: Session, deployment_id: uuid.UUID, step: int, pace: Pace) -> None:
    """The rollout's next step (past the last: live), if it is still at the one before."""
    deployment = _locked(session, deployment_id)
    if deployment is None or deployment.status not in (CANARY_STEPS, SWITCHING) or deployment.step != step - 1:
        return
    endpoint = session.get(Endpoint, deployment.endpoint_id)
    if step < len(deployment.steps):
        _move_traffic(session, deployment, endpoint, step, pace)
    else:
        _go_live(session, deployment, endpoint)


def _move_traffic(session: Session, deployment: Deployment, endpoint: Endpoint, step: int, pace: Pace) -> None:
    if deployment.strategy == AB_ARM:
        _split_units(session, deployment, endpoint, pace)
        return
    weight = deployment.steps[step]
    previous = session.get(Deployment, deployment.previous_id) if deployment.previous_id else None
    routes = [traffic.route(deployment.id, deployment.version, weight)]
    if previous is not None and previous.status == LIVE and weight < 100:
        routes.append(traffic.route(previous.id, previous.version, 100 - weight))
    change = traffic.switch(session, endpoint, routes, deployment_id=deployment.id, ahead_seconds=pace.ahead_seconds,
                            reason=f"version {deployment.version} takes {weight}% of traffic")
    deployment.step = step
    if weight < 100:
        transition(session, deployment, CANARY_STEPS, f"step {step + 1} of {len(deployment.steps)}: "
                                                      f"{weight}% of traffic to version {deployment.version}")
        countdown = pace.ahead_seconds + deployment.step_pause_seconds
    else:
        transition(session, deployment, SWITCHING, f"all traffic goes to version {deployment.version} at "
                                                   f"{traffic.effective_at(change).isoformat()}")
        countdown = pace.ahead_seconds
    deployment.next_action_at = utcnow() + timedelta(seconds=countdown) + TASK_GRACE
    enqueue_after_commit(session, NEXT_STEP, str(deployment.id), step + 1, queue=pace.queue, countdown=countdown)
    if step == 0:
        # One watch per rollout, from its first traffic to the end of the observation window.
        enqueue_after_commit(session, OBSERVE, str(deployment.id), queue=pace.queue,
                             countdown=pace.ahead_seconds + OBSERVE_EVERY_SECONDS)


def _split_units(session: Session, deployment: Deployment, endpoint: Endpoint, pace: Pace) -> None:
    """An A/B test's arm B takes its share of the units beside A (the deployment live before it), each unit
    placed by a hash salted with the test's id, and holds it until the test ends: no next step follows."""
    test = session.scalar(sa.select(ABTest).where(ABTest.deployment_b_id == deployment.id))
    a = session.get(Deployment, deployment.previous_id)
    if test.type == "shadow":
        routes = [traffic.route(a.id, a.version, 100.0), traffic.route(deployment.id, deployment.version, 100.0,
                                                                       shadow=True)]
        taking = f"a copy of every request, answered beside version {a.version}, which alone is returned"
    else:
        share = deployment.steps[0]
        routes = [traffic.route(deployment.id, deployment.version, share),
                  traffic.route(a.id, a.version, 100.0 - share)]
        taking = f"{share:g}% of units, beside version {a.version}"
    change = traffic.switch(session, endpoint, routes, deployment_id=deployment.id, ahead_seconds=pace.ahead_seconds,
                            salt=str(test.id), reason=f"A/B test {test.name!r}: version {deployment.version} takes "
                                                      f"{taking}")
    deployment.step = 0
    transition(session, deployment, CANARY_STEPS, f"A/B test {test.name!r}: version {deployment.version} takes "
                                                  f"{taking}")
    # Its share takes effect then; the observation window runs from there. Nothing is due before the test ends.
    deployment.live_at, deployment.next_action_at = traffic.effective_at(change), None
    enqueue_after_commit(session, OBSERVE, str(deployment.id), queue=pace.queue,
                         countdown=pace.ahead_seconds + OBSERVE_EVERY_SECONDS)


def _go_live(session: Session, deployment: Deployment, endpoint: Endpoint) -> None:
    """The switch to the candidate is in effect: it is live, and the deployment it replaced superseded."""
    previous = session.get(Deployment, deployment.previous_id) if deployment.previous_id else None
    for replaced in session.scalars(sa.select(Deployment).where(
            Deployment.endpoint_id == endpoint.id, Deployment.status == LIVE, Deployment.id != deployment.id)):
        transition(session, replaced, SUPERSEDED, f"replaced by version {deployment.version}")
    transition(session, deployment, LIVE, f"version {deployment.version} takes all traffic")
    deployment.live_at, deployment.next_action_at = utcnow(), None
    emit(session, "deployment.live", outcome_payload(
        deployment, endpoint, model_live=True, previous_version=previous.version if previous else None,
        live_deployment_id=deployment.id,
        live_alert_thresholds=deployment.config["monitoring_config"]["alert_thresholds"]), producer=PRODUCER)


def _observing(deployment: Deployment) -> bool:
    """While traffic moves, and for the observation window after the candidate took its traffic: all of it
    (live), or an A/B arm its share (which it holds for days: watched only as long as a rollout would be)."""
    if deployment.status in (CANARY_STEPS, SWITCHING) and deployment.strategy != AB_ARM:
        return True
    window = timedelta(seconds=deployment.config["monitoring_config"]["observation_seconds"])
    taking = LIVE if deployment.strategy != AB_ARM else CANARY_STEPS
    return deployment.status == taking and deployment.live_at is not None and \
        utcnow() < traffic.aware(deployment.live_at) + window


def observe(session: Session, deployment_id: uuid.UUID, queue: str) -> None:
    """Judge the candidate on what the replicas saw: roll back on a breached threshold, else look again
    shortly, until the observation window after it went live has passed."""
    deployment = _locked(session, deployment_id)
    if deployment is None or not _observing(deployment):
        return
    problem = observation.breach(observation.observed(session, deployment.endpoint_id, deployment.id),
                                 deployment.config["monitoring_config"])
    if problem is not None:
        roll_back(session, deployment, reason=f"automatic rollback: {problem}")
        return
    enqueue_after_commit(session, OBSERVE, str(deployment.id), queue=queue, countdown=OBSERVE_EVERY_SECONDS)


def redispatch(session: Session, queue: str) -> int:
    """Send again the task of every rollout whose next step is overdue (its task never arrived)."""
    overdue = session.scalars(sa.select(Deployment).where(
        Deployment.status.in_(IN_PROGRESS), Deployment.next_action_at < utcnow()))
    sent = 0
    for deployment in overdue:
        if deployment.status in (CANARY_STEPS, SWITCHING):
            enqueue_after_commit(session, NEXT_STEP, str(deployment.id), deployment.step + 1, queue=queue)
        else:
            enqueue_after_commit(session, ROLL_OUT, str(deployment.id), queue=queue)
        deployment.next_action_at = utcnow() + TASK_GRACE
        sent += 1
    return sent
