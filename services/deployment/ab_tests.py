"""Use cases of A/B tests: define one (a draft), start it, stop it, read them, list them.

A definition names both arms as fixed versions, resolved when it is made, so what the test compares never
changes under it: the registry is asked here and its answer kept. Everything that can be checked now is:
a bad definition is a 404/409/422 and nothing is stored.

A test runs on model A's endpoint, where A's version must be live. Starting it asks for a deployment of B's
version there (strategy `ab_test`, rollout.py): health checked like any, then B takes its share of the
units beside A, placed by a hash of each unit salted with the test's id, and holds it until the test ends.
The endpoint takes no other deployment meanwhile. Stopping it returns all traffic to A at once.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment import ab_metrics, traffic
from services.deployment.deployments import CHAMPION, PRODUCER, fail, new_deployment, transition
from services.deployment.service import ROLL_OUT
from services.deployment.tables import (
    AB_ARM, BLUE_GREEN, CONCLUDED, DRAFT, IN_PROGRESS, LIVE, RUNNING, SERVING, STOPPED, SUPERSEDED, ABTest,
    Deployment, Endpoint,
)
from shared import audit
from shared.auth import Actor
from shared.db import select_for_update, utcnow
from shared.errors import Conflict, IntegrityFailure, NotFound, ValidationFailed
from shared.events.outbox import emit
from shared.pagination import Page, Sorting, paginate
from shared.registry_client import RegistryClient
from shared.tasks import enqueue_after_commit

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
    if set(model_a.get("features") or ()) != set(model_b.get("features") or ()):
        raise ValidationFailed("Both arms' models must take the same features: units sent to B would be refused.",
                               errors={"model_b_id": [f"Model B takes {sorted(model_b.get('features') or [])}, model A "
                                                      f"{sorted(model_a.get('features') or [])}."]})
    live = _live_version(session, model_a["id"], body["environment"]) if body["version_a"] is None else None
    version_a = _arm(registry, model_a, body["version_a"] or live, "version_a")
    version_b = _arm(registry, model_b, body["version_b"], "version_b")
    if model_a["id"] == model_b["id"] and version_a["number"] == version_b["number"]:
        raise ValidationFailed(f"Both arms are version {version_a['number']} of one model.",
                               errors={"version_b": [f"Both arms are version {version_a['number']}: name another "
                                                     "version or model for B."]})
    success = ab_metrics.success_metrics(body["success_metrics"], model_a["type"])
    guardrails = ab_metrics.guardrails(body["guardrail_metrics"], model_a["type"])
    shadow = body["type"] == "shadow"
    # Shadow: B answers a copy of every request A answers, so it sees every unit.
    split = 1.0 if shadow else 0.5 if body["traffic_split"] is None else body["traffic_split"]
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
                           alpha=body["significance_level"], ratio=1.0 if shadow else split / (1 - split),
                           min_sample_size=body["min_sample_size"]),
        created_by=actor.name, created_by_id=actor.id, created_at=now)
    planned = body["test_config"].get("sample_size")
    smallest_arm = planned if shadow else planned * min(split, 1 - split) if planned else None
    if smallest_arm is not None and smallest_arm < body["min_sample_size"]:
        test.warnings.append(f"test_config.sample_size {planned} gives an arm about {int(smallest_arm)} units, below "
                             f"min_sample_size {body['min_sample_size']}: the test cannot conclude within its plan.")
    if shadow and body["traffic_split"] is not None:
        test.warnings.append(f"traffic_split {body['traffic_split']:g} is ignored: a shadow test sends B a copy of "
                             "every request, and only A's answers are returned.")
    session.add(test)
    session.flush()
    audit.record_change(session, actor=actor, action="ab_test.created", resource_type="ab_test", resource_id=test.id,
                        request_id=request_id, after={"name": test.name, "model_a_id": test.model_a_id,
                                                      "version_a": test.version_a, "model_b_id": test.model_b_id,
                                                      "version_b": test.version_b})
    return test


def get_test(session: Session, test_id: uuid.UUID, *, for_update: bool = False) -> ABTest:
    statement = sa.select(ABTest).where(ABTest.id == test_id)
    test = session.scalar(select_for_update(session, statement) if for_update else statement)
    if test is None:
        raise NotFound(f"No A/B test with id {test_id}.")
    return test


def list_tests(session: Session, *, status: str | None, limit: int, cursor: str | None, sort: str | None) -> Page:
    statement = sa.select(ABTest)
    if status:
        statement = statement.where(ABTest.status == status)
    return paginate(session, statement, sorting=SORTING, limit=limit, cursor=cursor, sort=sort)


# ---- running --------------------------------------------------------------------------------------

def _live_arm_a(session: Session, test: ABTest) -> tuple[Endpoint, Deployment]:
    """Model A's endpoint, locked until commit, and A's live deployment there; a 409 saying what to deploy."""
    lookup = sa.select(Endpoint).where(Endpoint.model_id == test.model_a_id, Endpoint.environment == test.environment)
    endpoint = session.scalar(select_for_update(session, lookup))
    if endpoint is None:
        raise Conflict(f"Model A has no endpoint in {test.environment}: deploy its version {test.version_a} there "
                       "first; the test runs on that endpoint.")
    live = session.scalar(sa.select(Deployment).where(Deployment.endpoint_id == endpoint.id, Deployment.status == LIVE))
    if live is None or (live.model_id, live.version) != (test.model_a_id, test.version_a):
        serving = f"version {live.version} is" if live is not None else "nothing is"
        raise Conflict(f"Version {test.version_a} of model A is not live on endpoint {endpoint.name} ({serving}): "
                       "deploy it first, or define a test whose version_a is the live one.")
    busy = session.scalar(sa.select(Deployment).where(Deployment.endpoint_id == endpoint.id,
                                                      Deployment.status.in_(IN_PROGRESS)).limit(1))
    if busy is not None:
        test_there = session.scalar(sa.select(ABTest.name).where(ABTest.deployment_b_id == busy.id))
        doing = f"A/B test {test_there!r} runs" if test_there else f"deployment {busy.id} is {busy.status}"
        raise Conflict(f"Endpoint {endpoint.name} is busy: {doing} there. Wait for it to end, or stop it.")
    return endpoint, live


def start_test(*, session: Session, actor: Actor, request_id: str, registry: RegistryClient,
               check_artifact: Callable[[str], None], queue: str, test_id: uuid.UUID) -> ABTest:
    """Put B's version on A's endpoint beside A (its rollout runs on `queue`); the test is running."""
    test = get_test(session, test_id, for_update=True)
    if test.status != DRAFT:
        raise Conflict(f"The test is {test.status}: only a draft starts. Define a new test to run it again.")
    endpoint, live = _live_arm_a(session, test)
    model_b = registry.model(str(test.model_b_id))
    version_b = registry.version(str(test.model_b_id), test.version_b)
    if version_b is None or version_b["status"] == "archived" or model_b["status"] == "archived":
        raise Conflict(f"Version {test.version_b} of model B is archived or gone: define a new test.")
    if not model_b.get("features"):
        raise Conflict("Model B names no features, so its predictions cannot be validated: set its `features` first.")
    try:
        check_artifact(version_b["artifact_sha256"])
    except (IntegrityFailure, NotFound) as exc:
        raise Conflict(f"Version {test.version_b}'s artifact fails its integrity check: {exc.detail}") from exc
    now = utcnow()
    # Checked and watched with A's own configuration, as A was when it went live.
    arm = new_deployment(
        session, endpoint=endpoint, model_id=test.model_b_id, version=version_b, features=model_b["features"],
        strategy=AB_ARM, steps=[test.traffic_split * 100.0], pause_seconds=0.0, config=dict(live.config),
        previous=live, actor_name=actor.name, actor_id=actor.id,
        reason=f"A/B test {test.name!r} started by {actor.name}")
    test.status, test.started_at = RUNNING, now
    test.endpoint_id, test.deployment_a_id, test.deployment_b_id = endpoint.id, live.id, arm.id
    audit.record_change(session, actor=actor, action="ab_test.started", resource_type="ab_test", resource_id=test.id,
                        request_id=request_id, before={"status": DRAFT},
                        after={"status": RUNNING, "endpoint": endpoint.name, "deployment_b_id": arm.id})
    emit(session, "abtest.started", {
        "ab_test_id": test.id, "name": test.name, "type": test.type, "endpoint": endpoint.name,
        "model_type": test.model_type, "model_a_id": test.model_a_id, "version_a": test.version_a,
        "model_b_id": test.model_b_id, "version_b": test.version_b, "traffic_split": test.traffic_split,
        "success_metrics": test.success_metrics, "guardrail_metrics": test.guardrail_metrics,
        "min_sample_size": test.min_sample_size, "max_duration_days": test.max_duration_days,
        "significance_level": test.significance_level, "mixing_variance": test.mixing_variance,
        "minimum_detectable_effect": test.minimum_detectable_effect, "started_at": now, "actor": actor.name, "actor_id": actor.id,
    }, producer=PRODUCER)
    enqueue_after_commit(session, ROLL_OUT, str(arm.id), queue=queue)
    return test


def _withdraw_arm(session: Session, test: ABTest, reason: str) -> None:
    """All of the endpoint's traffic back to A at once, and B's arm ended (failed if it never took any)."""
    arm = session.get(Deployment, test.deployment_b_id)
    endpoint = session.get(Endpoint, test.endpoint_id)
    if arm.status in SERVING:
        a = session.get(Deployment, test.deployment_a_id)
        traffic.switch(session, endpoint, [traffic.route(a.id, a.version, 100)], deployment_id=arm.id,
                       reason=f"A/B test {test.name!r} ended: {reason}")
        transition(session, arm, SUPERSEDED, f"A/B test {test.name!r} ended: {reason}")
    elif arm.status in IN_PROGRESS:
        fail(session, arm, endpoint, f"A/B test {test.name!r} ended before B took traffic: {reason}")


def stop_test(*, session: Session, actor: Actor, request_id: str, test_id: uuid.UUID) -> ABTest:
    """End a running test without a verdict: the endpoint serves A alone again, at once."""
    test = get_test(session, test_id, for_update=True)
    if test.status != RUNNING:
        raise Conflict(f"The test is {test.status}: only a running test stops.")
    # Stopped before the arm is withdrawn: its ending must not conclude the test as well (arm_ended).
    test.status, test.ended_at, test.summary = STOPPED, utcnow(), f"Stopped by {actor.name} before a verdict."
    _withdraw_arm(session, test, f"stopped by {actor.name}")
    emit(session, "abtest.stopped", {"ab_test_id": test.id, "name": test.name, "actor": actor.name}, producer=PRODUCER)
    audit.record_change(session, actor=actor, action="ab_test.stopped", resource_type="ab_test", resource_id=test.id,
                        request_id=request_id, before={"status": RUNNING}, after={"status": STOPPED})
    return test


def arm_ended(session: Session, arm: Deployment, reason: str) -> None:
    """B's arm failed its health check or was rolled back (by its observation or by hand): its test cannot go
    on, and concludes as invalid."""
    test = session.scalar(select_for_update(session, sa.select(ABTest).where(
        ABTest.deployment_b_id == arm.id, ABTest.status == RUNNING)))
    if test is None:
        return
    conclude(session, test, "invalid", f"Version {test.version_b} of model B left the endpoint: {reason}")


def conclude(session: Session, test: ABTest, verdict: str, summary: str) -> None:
    """The test's verdict, announced (abtest.concluded); set before its arm is withdrawn, whose ending must not
    conclude it again (arm_ended)."""
    test.status, test.verdict, test.summary, test.ended_at = CONCLUDED, verdict, summary, utcnow()
    emit(session, "abtest.concluded", {
        "ab_test_id": test.id, "name": test.name, "verdict": verdict, "summary": summary,
        "model_a_id": test.model_a_id, "version_a": test.version_a, "model_b_id": test.model_b_id,
        "version_b": test.version_b}, producer=PRODUCER)


def decided(session: Session, test_id: uuid.UUID, verdict: str, summary: str) -> None:
    """Monitoring's analysis reached `verdict`: the endpoint serves A alone again, the test concludes, and with
    auto_promote a winning B is deployed there blue-green, as any deployment, health checks and all. A test
    no longer running (stopped meanwhile, or a verdict heard twice) is left as it is."""
    test = session.scalar(select_for_update(session, sa.select(ABTest).where(ABTest.id == test_id)))
    if test is None or test.status != RUNNING:
        return
    conclude(session, test, verdict, summary)
    _withdraw_arm(session, test, f"the test concluded: {verdict}")
    if test.auto_promote and verdict == "b_wins":
        _promote(session, test)


def _promote(session: Session, test: ABTest) -> None:
    """B's version deployed blue-green on the endpoint, from what its arm was deployed with. Its rollout task is
    sent by the deploy pool's sweep for rollouts due (rollout.redispatch, every 30 s): a consumer sends no tasks."""
    arm, a = session.get(Deployment, test.deployment_b_id), session.get(Deployment, test.deployment_a_id)
    endpoint = session.get(Endpoint, test.endpoint_id)
    version = {"number": arm.version, "artifact_sha256": arm.artifact_sha256, "flavor": arm.flavor,
               "profile": arm.profile}
    promotion = new_deployment(
        session, endpoint=endpoint, model_id=arm.model_id, version=version, features=arm.features,
        strategy=BLUE_GREEN, steps=[100], pause_seconds=0.0, config=dict(arm.config), previous=a,
        actor_name=f"A/B test {test.name}", actor_id=None,
        reason=f"A/B test {test.name!r} concluded that B wins: auto_promote")
    promotion.next_action_at = utcnow()
