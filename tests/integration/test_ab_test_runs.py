"""A/B tests on a real Celery worker: starting one puts B beside the live A on A's endpoint after its health
check, each unit always meets one arm and the split is the one asked for; stopping returns every unit to A;
a verdict concludes it (promoting a winning B when asked); a B rolled back ends its test as invalid; starting
what cannot run is a 409 that changes nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from scipy import stats

from services.deployment.handlers import ABTestDecisions
from services.deployment.service import REDISPATCH_STALLED
from services.monitoring.handlers import ABTestAnalyses
from services.serving.replica import bucket
from services.registry.handlers import DeploymentOutcomes, TrainingOutcomes
from shared.config import load_settings
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from shared.tasks import task_sender
from tests.conftest import RUN_ID
from tests.support.deployments import FEATURES, deploy, iris_row, model_with_versions, skops_model, wait_ended
from tests.support.polling import wait_for
from tests.support.registry import bearer, create_model, upload_version
from tests.support.training import celery_worker, event_pipeline, training_settings

pytestmark = pytest.mark.integration

AB_TESTS = "/api/v1/ab-tests"


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return training_settings(database_url, servers, tmp_path_factory.mktemp("abtest"), RUN_ID)


@pytest.fixture
def settings_overrides(settings):
    return settings


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory):
    # Monitoring learns of each test, and its verdicts conclude them: the whole loop, over real events.
    consumers = [TrainingOutcomes(load_settings(settings)), DeploymentOutcomes(load_settings(settings)),
                 ABTestAnalyses(), ABTestDecisions()]
    with event_pipeline(load_settings(settings), consumers):
        with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log") as running:
            yield running


@pytest.fixture
def ml(app):
    return bearer(app, "ml_engineer", "mira")


def live_model(client, ds, ml, versions: int = 2) -> tuple[dict, str]:
    """A model whose version 1 is live in production, and its endpoint's name."""
    model = model_with_versions(client, ds, versions)
    deployment = wait_ended(client, ml, deploy(client, ml, model["id"], version=1))
    assert deployment["status"] == "live", deployment
    return model, deployment["endpoint"]


def define(client, ml, model_a: dict, **fields) -> dict:
    answer = client.post(AB_TESTS, json={"name": f"test of {model_a['name']}", "model_a_id": model_a["id"],
                                         "version_a": 1, "success_metrics": ["accuracy"], **fields}, headers=ml)
    assert answer.status_code == 201, answer.json
    return answer.json


def arm_status(client, ml, test: dict) -> str:
    return client.get(f"/api/v1/deployments/{test['deployment_b_id']}", headers=ml).json["status"]


def served(client, ds, endpoint: str, unit: str) -> int:
    answer = client.post(f"/api/v1/endpoints/{endpoint}/predict", json={"instances": [iris_row()], "unit_id": unit},
                         headers=ds)
    assert answer.status_code == 200, answer.json
    return answer.json["model_version"]


def iris_orders(client, ds, model: dict, endpoint: str, count: int) -> list[dict]:
    """`count` orders (order-n, from user-n) predicted on the endpoint, then their actuals posted; the answers.
    One actual in ten contradicts the truth: B errs often enough (~10%) for its rate to be trusted, whichever
    units the test's salt sends it."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    answers, actuals = [], []
    for n in range(count):
        row = dict(zip(FEATURES, map(float, iris.data[n % 150])))
        answer = client.post(f"/api/v1/endpoints/{endpoint}/predict",
                             json={"instances": [row], "unit_id": f"user-{n}", "request_id": f"order-{n}"},
                             headers=ds)
        assert answer.status_code == 200, answer.json
        answers.append(answer.json)
        actual = int(iris.target[n % 150]) if n % 10 else (int(iris.target[n % 150]) + 1) % 3
        actuals.append({"model_id": model["id"], "request_id": f"order-{n}", "actual": actual})
    stored = client.post("/api/v1/monitoring/actuals", json={"records": actuals}, headers=ds)
    assert stored.status_code == 202 and stored.json["accepted"] == count, stored.json
    return answers


def test_b_takes_its_share_of_the_units_each_sticky_until_the_test_stops(client, ds, ml):
    model, endpoint = live_model(client, ds, ml)
    test = define(client, ml, model, version_b=2, traffic_split=0.3)
    started = client.post(f"{AB_TESTS}/{test['id']}/start", headers=ml)
    assert started.status_code == 200, started.json
    test = started.json
    assert test["status"] == "running" and test["started_at"] and test["deployment_b_id"]
    wait_for(lambda: arm_status(client, ml, test) == "canary", timeout=60, what="B to take its share")
    arm = client.get(f"/api/v1/deployments/{test['deployment_b_id']}", headers=ml).json
    assert arm["strategy"] == "ab_test" and arm["version"] == 2
    # Its share is written a moment ahead, so every replica switches at once: wait until B answers.
    wait_for(lambda: any(served(client, ds, endpoint, f"probe-{n}") == 2 for n in range(20)), timeout=10,
             what="B's share in effect")

    units = [f"user-{n}" for n in range(600)]
    versions = {unit: served(client, ds, endpoint, unit) for unit in units}
    # Each unit meets the arm its hash salted with the test's id places it in (uniform: test_traffic_split),
    # so the realised split is the intended one.
    expected = {unit: 2 if bucket(test["id"], unit) < 30.0 else 1 for unit in units}
    assert {unit: (versions[unit], expected[unit]) for unit in units if versions[unit] != expected[unit]} == {}
    assert stats.binomtest(sum(version == 2 for version in versions.values()), len(units), 0.3).pvalue > 1e-6
    assert all(served(client, ds, endpoint, unit) == versions[unit] for unit in units[:50])  # sticky

    stopped = client.post(f"{AB_TESTS}/{test['id']}/stop", headers=ml)
    assert stopped.status_code == 200 and stopped.json["status"] == "stopped" and stopped.json["verdict"] is None
    assert arm_status(client, ml, test) == "superseded"
    # At once in the control plane; the replicas learn it at their next poll or event.
    wait_for(lambda: {served(client, ds, endpoint, unit) for unit in units[:50]} == {1}, timeout=10,
             what="every unit back on A")
    # A stopped test neither starts again nor stops twice; the endpoint takes deployments again.
    assert client.post(f"{AB_TESTS}/{test['id']}/start", headers=ml).status_code == 409
    assert client.post(f"{AB_TESTS}/{test['id']}/stop", headers=ml).status_code == 409


def decide(app, test: dict, verdict: str) -> None:
    """Monitoring's analysis deciding, as its event reaches the deployment service."""
    envelope = build_envelope("abtest.decided", {"ab_test_id": test["id"], "verdict": verdict,
                                                 "summary": f"decided: {verdict}", "decided_at": datetime.now(timezone.utc)},
                              producer="monitoring")
    db = app.extensions["modelyard"].db
    assert process(db, ABTestDecisions(), envelope) is True
    assert process(db, ABTestDecisions(), envelope) is False  # heard twice: once is all it does


def test_a_verdict_that_b_wins_concludes_the_test_and_promotes_b(app, client, ds, ml, settings):
    model, endpoint = live_model(client, ds, ml)
    test = define(client, ml, model, version_b=2, auto_promote=True)
    test = client.post(f"{AB_TESTS}/{test['id']}/start", headers=ml).json
    wait_for(lambda: arm_status(client, ml, test) == "canary", timeout=60, what="B to take its share")
    decide(app, test, "b_wins")
    ended = client.get(f"{AB_TESTS}/{test['id']}", headers=ml).json
    assert (ended["status"], ended["verdict"], ended["summary"]) == ("concluded", "b_wins", "decided: b_wins")
    assert arm_status(client, ml, test) == "superseded"
    with app.extensions["modelyard"].db.transaction() as session:
        concluded = [row.envelope["payload"] for row in session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.type == "abtest.concluded"))]
    assert [(event["ab_test_id"], event["verdict"]) for event in concluded] == [(test["id"], "b_wins")]
    # B's promotion is a deployment like any: the deploy pool's sweep sends its rollout.
    task_sender(load_settings(settings)).send_task(REDISPATCH_STALLED,
                                                   queue=load_settings(settings).task_queue("default"))
    promoted = wait_for(lambda: next((d for d in client.get(f"/api/v1/models/{model['id']}/deployments",
                                                              headers=ml).json["items"]
                                      if d["strategy"] == "blue_green" and d["status"] == "live" and d["version"] == 2),
                                     None), timeout=60, what="B promoted")
    assert promoted["requested_by"] == f"A/B test {test['name']}"
    wait_for(lambda: served(client, ds, endpoint, "anyone") == 2, timeout=10, what="B to serve")


def test_b_rolled_back_concludes_its_test_as_invalid(client, ds, ml):
    model, _ = live_model(client, ds, ml)
    test = client.post(f"{AB_TESTS}/{define(client, ml, model, version_b=2)['id']}/start", headers=ml).json
    wait_for(lambda: arm_status(client, ml, test) == "canary", timeout=60, what="B to take its share")
    assert client.post(f"/api/v1/deployments/{test['deployment_b_id']}/rollback", headers=ml).status_code == 200
    ended = client.get(f"{AB_TESTS}/{test['id']}", headers=ml).json
    assert (ended["status"], ended["verdict"]) == ("concluded", "invalid")
    assert "rolled back by mira" in ended["summary"]


def test_what_cannot_run_is_a_409_and_changes_nothing(client, ds, ml):
    idle = model_with_versions(client, ds, 2)
    not_deployed = define(client, ml, idle, version_b=2)
    answer = client.post(f"{AB_TESTS}/{not_deployed['id']}/start", headers=ml)
    assert answer.status_code == 409 and "no endpoint in production" in answer.json["detail"]

    model, _ = live_model(client, ds, ml, versions=3)
    not_live = client.post(AB_TESTS, json={"name": "v2 against v3", "model_a_id": model["id"], "version_a": 2,
                                           "version_b": 3, "success_metrics": ["accuracy"]}, headers=ml).json
    answer = client.post(f"{AB_TESTS}/{not_live['id']}/start", headers=ml)
    assert answer.status_code == 409 and "version 1 is" in answer.json["detail"]

    first = client.post(f"{AB_TESTS}/{define(client, ml, model, version_b=2)['id']}/start", headers=ml).json
    second = client.post(AB_TESTS, json={"name": "another", "model_a_id": model["id"], "version_a": 1,
                                         "version_b": 3, "success_metrics": ["accuracy"]}, headers=ml).json
    answer = client.post(f"{AB_TESTS}/{second['id']}/start", headers=ml)
    assert answer.status_code == 409 and "busy" in answer.json["detail"]
    assert client.get(f"{AB_TESTS}/{second['id']}", headers=ml).json["status"] == "draft"
    assert client.post(f"{AB_TESTS}/{second['id']}/stop", headers=ml).status_code == 409
    # Nor does a deployment land on an endpoint where a test runs.
    busy = client.post(f"/api/v1/models/{model['id']}/deployments", json={"environment": "production", "version": 3},
                       headers=ml)
    assert busy.status_code == 409
    assert client.post(f"{AB_TESTS}/{first['id']}/start", headers=bearer(client.application, "data_scientist")
                       ).status_code == 403


def test_traffic_and_actuals_carry_a_test_to_its_verdict_and_the_winner_is_promoted(client, ds, ml, settings):
    """End to end: version 1 guesses (fitted on shuffled labels), version 2 knows iris; units meet their arm
    through predict, their actuals arrive, monitoring's analysis decides, and B becomes the endpoint's live
    version through a normal deployment."""
    model = create_model(client, ds, features=FEATURES)
    for data in (skops_model(0, shuffled=True), skops_model(0)):
        assert upload_version(client, ds, model["id"], data, filename="model.skops").status_code == 201
    endpoint = wait_ended(client, ml, deploy(client, ml, model["id"], version=1))["endpoint"]
    test = define(client, ml, model, version_b=2, min_sample_size=50, auto_promote=True)
    test = client.post(f"{AB_TESTS}/{test['id']}/start", headers=ml).json
    wait_for(lambda: arm_status(client, ml, test) == "canary", timeout=60, what="B to take its share")
    wait_for(lambda: any(served(client, ds, endpoint, f"probe-{n}") == 2 for n in range(20)), timeout=10,
             what="B's share in effect")

    iris_orders(client, ds, model, endpoint, 400)
    # Serving hands its records to the ingest pool: the results are asked for once all 400 met their actuals
    # (the probes above have none).
    wait_for(lambda: client.get(f"/api/v1/models/{model['id']}/performance?days=1", headers=ds
                                ).json["summary"]["with_actuals"] >= 400, timeout=60, what="the predictions stored")

    results = client.get(f"{AB_TESTS}/{test['id']}/results", headers=ds).json
    accuracy = next(metric for metric in results["metrics"] if metric["name"] == "accuracy")
    assert accuracy["estimate_b"] > 0.8 > 0.5 > accuracy["estimate_a"]
    assert accuracy["p_value_sequential"] < 0.05 and results["srm"]["flagged"] is False, accuracy
    assert results["decision"]["verdict"] == "b_wins", results

    concluded = wait_for(lambda: (found := client.get(f"{AB_TESTS}/{test['id']}", headers=ml).json)["status"]
                         == "concluded" and found, timeout=20, what="the deployment service to conclude the test")
    assert concluded["verdict"] == "b_wins"
    task_sender(load_settings(settings)).send_task(REDISPATCH_STALLED,
                                                   queue=load_settings(settings).task_queue("default"))
    wait_for(lambda: client.get(f"/api/v1/endpoints/{endpoint}", headers=ds).json["live_version"] == 2, timeout=60,
             what="B promoted to live")


def test_a_shadow_b_answers_copies_never_returned_and_is_judged_against_as_actuals(client, ds, ml):
    """Shadow: every request is answered by A and copied to B, whose answers are recorded under the same
    request ids; the actuals of A's answers judge both, and the verdict ends the shadow without promoting."""
    model = create_model(client, ds, features=FEATURES)
    for data in (skops_model(0, shuffled=True), skops_model(0)):
        assert upload_version(client, ds, model["id"], data, filename="model.skops").status_code == 201
    endpoint = wait_ended(client, ml, deploy(client, ml, model["id"], version=1))["endpoint"]
    test = define(client, ml, model, version_b=2, type="shadow", min_sample_size=50)
    assert test["traffic_split"] == 1.0 and test["type"] == "shadow"
    test = client.post(f"{AB_TESTS}/{test['id']}/start", headers=ml).json
    assert test["status"] == "running", test
    wait_for(lambda: arm_status(client, ml, test) == "canary", timeout=60, what="B to take its copies")
    shadow_route = {"deployment_id": test["deployment_b_id"], "version": 2, "weight": 100.0, "shadow": True}
    wait_for(lambda: shadow_route in ((client.get(f"/api/v1/endpoints/{endpoint}", headers=ml).json["traffic"]
                                       or {}).get("routes") or []), timeout=10, what="B's shadow route in effect")
    # Replicas learn of it at their next poll or event: probe until a copy of a probe reached B.
    def copied_to_b() -> bool:
        assert served(client, ds, endpoint, "probe") == 1
        return client.get(f"/api/v1/models/{model['id']}/performance?days=1&version=2",
                          headers=ds).json["summary"]["predictions"] > 0

    wait_for(copied_to_b, timeout=30, what="B answering copies")

    assert {answer["model_version"] for answer in iris_orders(client, ds, model, endpoint, 300)} == {1}
    # Every order-n was answered by both versions, each stored under its own version, each meeting its actual.
    for version in (1, 2):
        wait_for(lambda: client.get(f"/api/v1/models/{model['id']}/performance?days=1&version={version}",
                                    headers=ds).json["summary"]["with_actuals"] >= 300, timeout=60,
                 what=f"version {version}'s predictions stored")

    results = client.get(f"{AB_TESTS}/{test['id']}/results", headers=ds).json
    assert results["units"]["A"] == results["units"]["B"] >= 300
    assert results["srm"]["weights"] == [0.5, 0.5] and results["srm"]["flagged"] is False
    accuracy = next(metric for metric in results["metrics"] if metric["name"] == "accuracy")
    assert accuracy["estimate_b"] > 0.8 > 0.5 > accuracy["estimate_a"], accuracy
    assert results["decision"]["verdict"] == "b_wins", results

    concluded = wait_for(lambda: (found := client.get(f"{AB_TESTS}/{test['id']}", headers=ml).json)["status"]
                         == "concluded" and found, timeout=20, what="the deployment service to conclude the test")
    assert concluded["verdict"] == "b_wins"
    # Without auto_promote the shadow simply ends: A alone, as before.
    endpoint_now = client.get(f"/api/v1/endpoints/{endpoint}", headers=ml).json
    assert endpoint_now["live_version"] == 1
    assert [route.get("shadow", False) for route in endpoint_now["traffic"]["routes"]] == [False]
