"""Deployments end to end on a real Celery worker and event pipeline: a version becomes live on its
endpoint, is replaced blue-green or by canary, is rolled back, and a candidate that cannot load fails
with the live version untouched; the endpoint's history answers which version served when."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.deployment import observation, traffic
from services.deployment.tables import LIVE, Deployment, Endpoint
from services.monitoring.tables import Prediction
from services.registry.handlers import DeploymentOutcomes, TrainingOutcomes
from services.serving import switch
from services.serving.replica import bucket
from shared.config import load_settings
from tests.conftest import RUN_ID
from tests.support.deployments import deploy, iris_row, model_with_versions, skops_model, wait_ended
from tests.support.polling import wait_for
from tests.support.registry import bearer, create_model, upload_version
from tests.support.training import celery_worker, event_pipeline, training_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return training_settings(database_url, servers, tmp_path_factory.mktemp("deploy"), RUN_ID)


@pytest.fixture
def settings_overrides(settings):
    return settings


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory):
    consumers = [TrainingOutcomes(load_settings(settings)), DeploymentOutcomes(load_settings(settings))]
    with event_pipeline(load_settings(settings), consumers):
        with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log") as running:
            yield running


@pytest.fixture
def ml(app):
    return bearer(app, "ml_engineer", "mira")


def predict(client, headers, endpoint, rows=None, **body):
    return client.post(f"/api/v1/endpoints/{endpoint}/predict", json={"instances": [iris_row()] if rows is None else rows, **body},
                       headers=headers)


def served_version(client, headers, endpoint):
    response = predict(client, headers, endpoint)
    assert response.status_code == 200, response.json
    return response.json["model_version"]


def test_a_version_goes_live_and_answers_predictions_naming_itself(client, ml, ds):
    model = model_with_versions(client, ds, name="Iris Classifier")
    accepted = deploy(client, ml, model["id"])
    assert accepted["endpoint"] == "iris-classifier-production"
    assert accepted["endpoint_url"] == "/api/v1/endpoints/iris-classifier-production/predict"
    deployment = wait_ended(client, ml, accepted)
    assert deployment["status"] == "live", deployment
    assert [t["to_status"] for t in deployment["transitions"]] == ["pending", "deploying", "health_checking", "switching",
                                                                    "live"]
    assert all(t["reason"] for t in deployment["transitions"])
    assert [check["ok"] for check in deployment["health"]] == [True, True, True]  # the load, then two smoke predictions
    endpoint = client.get("/api/v1/endpoints/iris-classifier-production", headers=ds).json
    assert endpoint["live_version"] == 1 and endpoint["candidate_version"] is None
    # Live means in effect: the first prediction after it is served.
    answer = predict(client, ds, "iris-classifier-production", [iris_row(), iris_row(petal_length=5.0)],
                     request_id="req-1").json
    assert answer["model_version"] == 1 and answer["predictions"][0] == 0
    assert answer["request_ids"] == ["req-1-0", "req-1-1"]
    assert set(answer["probabilities"][0]) == {"0", "1", "2"}
    # The registry hears of it: the model is deployed, and the version's lineage shows the deployment.
    wait_for(lambda: client.get(f"/api/v1/models/{model['id']}", headers=ds).json["status"] == "deployed",
             what="the model to be deployed")
    lineage = client.get(f"/api/v1/models/{model['id']}/versions/1/lineage?direction=down", headers=ds).json
    assert any(node["type"] == "deployment" for node in lineage["nodes"])
    listed = client.get(f"/api/v1/models/{model['id']}/deployments", headers=ds).json
    assert [item["id"] for item in listed["items"]] == [accepted["id"]]


def test_a_prediction_record_without_a_version_belongs_to_the_live_one(app, client, ml, ds):
    model = model_with_versions(client, ds, count=2)
    assert wait_ended(client, ml, deploy(client, ml, model["id"], version=1))["status"] == "live"
    listed = client.get(f"/api/v1/models/{model['id']}/deployments", headers=ds).json["items"]
    assert [(item["environment"], item["status"]) for item in listed] == [("production", "live")]
    for body in ({"request_id": "live"}, {"request_id": "named", "version": 2}):
        response = client.post("/api/v1/monitoring/predictions", json={"model_id": model["id"], "prediction": 1, **body},
                               headers=ds)
        assert response.status_code == 202, response.json
    with app.extensions["modelyard"].db.transaction() as session:
        rows = session.execute(sa.select(Prediction.request_id, Prediction.version)
                               .where(Prediction.model_id == uuid.UUID(model["id"]))).all()
    assert sorted(rows) == [("live", 1), ("named", 2)]  # not the latest (2) when another is live


def test_blue_green_then_rollback_and_the_history_of_what_served(client, ml, ds):
    model = model_with_versions(client, ds, count=2)
    first = wait_ended(client, ml, deploy(client, ml, model["id"], version=1))
    endpoint = first["endpoint"]
    assert served_version(client, ds, endpoint) == 1
    between = datetime.now(timezone.utc)
    second_accepted = deploy(client, ml, model["id"], version=2)
    # One rollout at a time per endpoint.
    busy = client.post(f"/api/v1/models/{model['id']}/deployments", json={"environment": "production"}, headers=ml)
    assert busy.status_code == 409 and busy.mimetype == "application/problem+json"
    second = wait_ended(client, ml, second_accepted)
    assert second["status"] == "live" and second["previous_id"] == first["id"]
    assert client.get(f"/api/v1/deployments/{first['id']}", headers=ml).json["status"] == "superseded"
    assert served_version(client, ds, endpoint) == 2
    after = datetime.now(timezone.utc)

    rolled = client.post(f"/api/v1/deployments/{second['id']}/rollback", headers=ml)
    assert rolled.status_code == 200 and rolled.json["status"] == "rolled_back"
    # In effect at once; replicas learn of it at their next poll of the desired state.
    wait_for(lambda: served_version(client, ds, endpoint) == 1, timeout=5, what="version 1 again")
    assert client.get(f"/api/v1/deployments/{first['id']}", headers=ml).json["status"] == "live"

    def served(at):
        response = client.get(f"/api/v1/endpoints/{endpoint}/history", query_string={"at": at.isoformat()},
                              headers=ds)
        assert response.status_code == 200, response.json
        return [route["version"] for route in response.json["routes"]]

    assert served(between - timedelta(hours=1)) == []
    assert served(between) == [1]
    assert served(after) == [2]
    assert served(datetime.now(timezone.utc)) == [1]
    # Rolling back twice is refused; so is rolling back the first deployment (nothing before it).
    assert client.post(f"/api/v1/deployments/{second['id']}/rollback", headers=ml).status_code == 409
    assert client.post(f"/api/v1/deployments/{first['id']}/rollback", headers=ml).status_code == 409
    # The model's list holds every deployment with its transitions, as each one's own answer does.
    listed = client.get(f"/api/v1/models/{model['id']}/deployments", headers=ds).json["items"]
    assert [item["id"] for item in listed] == [second["id"], first["id"]]
    assert [item["transitions"] for item in listed] == [
        client.get(f"/api/v1/deployments/{item['id']}", headers=ds).json["transitions"] for item in listed]
    assert listed[0]["transitions"][-1]["to_status"] == "rolled_back"


def test_a_canary_moves_traffic_step_by_step(client, ml, ds):
    model = model_with_versions(client, ds, count=2)
    wait_ended(client, ml, deploy(client, ml, model["id"], version=1))
    canary = wait_ended(client, ml, deploy(client, ml, model["id"], version=2, strategy="canary",
                                           canary={"steps": [50, 100], "pause_seconds": 1}))
    assert canary["status"] == "live"
    moves = [t["to_status"] for t in canary["transitions"]]
    assert moves == ["pending", "deploying", "health_checking", "canary", "switching", "live"]
    assert "50% of traffic" in canary["transitions"][3]["reason"]


def _arm_on_endpoint(session, deployment_id: str, endpoint_name: str) -> Deployment:
    """Another model's deployed version, also on this endpoint: what an A/B test's arm B is."""
    own = session.get(Deployment, uuid.UUID(deployment_id))
    endpoint = session.scalar(sa.select(Endpoint).where(Endpoint.name == endpoint_name))
    now = datetime.now(timezone.utc)
    arm = Deployment(id=uuid.uuid4(), endpoint_id=endpoint.id, model_id=own.model_id, version=own.version,
                     artifact_sha256=own.artifact_sha256, flavor=own.flavor, features=own.features,
                     profile=own.profile, strategy=own.strategy, steps=[100], step=0, config=own.config,
                     status=LIVE, health=[], requested_by="test", created_at=now, updated_at=now, live_at=now)
    session.add(arm)
    session.flush()
    return arm


def test_two_models_split_an_endpoint_by_a_salted_hash_and_each_answer_is_recorded_under_its_model(app, client, ml,
                                                                                                    ds):
    old, new = model_with_versions(client, ds, name="churn old"), model_with_versions(client, ds, name="churn new")
    a = wait_ended(client, ml, deploy(client, ml, old["id"]))
    b = wait_ended(client, ml, deploy(client, ml, new["id"], environment="staging"))
    endpoint, salt = a["endpoint"], str(uuid.uuid4())
    db = app.extensions["modelyard"].db
    with db.transaction() as session:
        arm = _arm_on_endpoint(session, b["id"], endpoint)
        arm_id, endpoint_id = str(arm.id), arm.endpoint_id
        # B takes half a percent; both arms are version 1, of two models.
        traffic.switch(session, session.get(Endpoint, endpoint_id),
                       [traffic.route(arm.id, arm.version, 0.5), traffic.route(uuid.UUID(a["id"]), 1, 99.5)],
                       reason="an A/B test: version 1 of churn new takes 0.5% of traffic", deployment_id=None,
                       salt=salt)
    units = [f"user-{n}" for n in range(2000)]
    in_b = [unit for unit in units if bucket(salt, unit) < 0.5][:3]
    in_a = [unit for unit in units if bucket(salt, unit) >= 0.5][:3]
    assert len(in_b) == 3

    def answered_by(unit):
        response = predict(client, ds, endpoint, unit_id=unit, request_id=f"r-{unit}")
        assert response.status_code == 200, response.json
        return response.json["model_id"]

    wait_for(lambda: answered_by(in_b[0]) == new["id"], timeout=5, what="the split to reach the replica")
    for _ in range(2):  # the same unit always meets the same arm
        assert [answered_by(unit) for unit in in_b + in_a] == [new["id"]] * 3 + [old["id"]] * 3
    served = client.get(f"/api/v1/endpoints/{endpoint}/history", headers=ds).json
    assert ([r["weight"] for r in served["routes"]], served["salt"]) == ([0.5, 99.5], salt)
    desired = client.get(f"/api/v1/endpoints/{endpoint}/desired-state", headers=ds).json
    assert desired["changes"][-1]["salt"] == salt and desired["deployments"][arm_id]["model_id"] == new["id"]

    # Monitoring has each prediction under the model that made it, on this endpoint, by deployment.
    expected = {(unit, new["id"], arm_id) for unit in in_b} | {(unit, old["id"], a["id"]) for unit in in_a}

    def recorded():
        with db.transaction() as session:
            rows = session.execute(sa.select(Prediction.unit_id, Prediction.model_id, Prediction.deployment_id)
                                   .where(Prediction.endpoint == endpoint)).all()
        return {(unit, str(model), str(deployment)) for unit, model, deployment in rows} >= expected

    wait_for(recorded, timeout=30, what="the predictions recorded under each arm's model")

    # The replicas report the two version 1s apart, by deployment, as the rollout's observation reads them:
    # B answered the wait's last request and the six after it.
    def observed():
        with db.transaction() as session:
            return [observation.observed(session, endpoint_id, uuid.UUID(key)).requests for key in (arm_id, a["id"])]

    assert wait_for(lambda: (found := observed())[0] == 7 and found, timeout=10, what="the replicas' reports")[1] >= 6
    replicas = client.get(f"/api/v1/endpoints/{endpoint}", headers=ds).json["replicas"]
    reported = [replica["versions"] for replica in replicas]
    assert any(versions.get(arm_id, {}).get("version") == 1 and versions.get(a["id"], {}).get("version") == 1
               for versions in reported), reported


def test_a_candidate_that_cannot_load_fails_and_the_live_version_keeps_serving(client, ml, ds):
    model = model_with_versions(client, ds)
    live = wait_ended(client, ml, deploy(client, ml, model["id"]))
    assert upload_version(client, ds, model["id"], b"not a model at all").status_code == 201
    failed = wait_ended(client, ml, deploy(client, ml, model["id"], version=2))
    assert failed["status"] == "failed"
    assert "cannot be loaded" in failed["reason"]
    assert failed["health"][-1]["ok"] is False
    assert client.get(f"/api/v1/deployments/{live['id']}", headers=ml).json["status"] == "live"
    wait_for(lambda: predict(client, ds, live["endpoint"]).status_code == 200, timeout=10, what="version 1")
    assert served_version(client, ds, live["endpoint"]) == 1


def test_bad_requests_change_nothing(client, ml, ds, app, settings_overrides):
    model = model_with_versions(client, ds)
    url = f"/api/v1/models/{model['id']}/deployments"
    post = lambda body, headers=ml: client.post(url, json={"environment": "staging", **body}, headers=headers)  # noqa: E731
    assert client.post("/api/v1/models/nope/deployments", json={"environment": "staging"}, headers=ml).status_code == 404
    assert post({"version": 7}).status_code == 404
    featureless = create_model(client, ds)
    assert upload_version(client, ds, featureless["id"], skops_model(0), filename="model.skops").status_code == 201
    refused = client.post(f"/api/v1/models/{featureless['id']}/deployments", json={"environment": "staging"},
                          headers=ml)
    assert refused.status_code == 409 and "features" in refused.json["detail"]
    for body, field in [
        ({"environment": "moon"}, "environment"),
        ({"strategy": "canary", "canary": {"steps": [50, 20, 100]}}, "canary"),
        ({"strategy": "canary", "canary": {"steps": [10, 50]}}, "canary"),
        ({"strategy": "canary", "canary": {"steps": [10, 150]}}, "canary"),
        ({"scaling_config": {"min_replicas": 5, "max_replicas": 2}}, "scaling_config"),
        ({"health_check_config": {"interval": -1}}, "health_check_config"),
        ({"monitoring_config": {"alert_thresholds": {"error_rate": 101}}}, "monitoring_config"),
        ({"deployment_config": {"replicas": 0}}, "deployment_config"),
        ({"deployment_config": {"resources": {"memory": "lots"}}}, "deployment_config"),
        ({"canary": {"steps": [100]}}, "canary"),
    ]:
        response = post(body)
        assert response.status_code == 422, (body, response.json)
        assert field in response.json["errors"], (body, response.json)
    # A version whose stored artifact was tampered with is refused before anything moves.
    tampered = upload_version(client, ds, model["id"], skops_model(5), filename="model.skops").json
    path = Path(settings_overrides["artifact_root"]) / tampered["artifact_sha256"][:2] / \
        tampered["artifact_sha256"][2:4] / tampered["artifact_sha256"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    refused = post({"version": tampered["number"]})
    assert refused.status_code == 409 and "integrity" in refused.json["detail"], refused.json
    assert post({}, headers=ds).status_code == 403
    assert post({}, headers=bearer(app, "viewer")).status_code == 403
    assert client.post(f"/api/v1/models/{model['id']}/archive", headers=ds).status_code == 200
    assert post({}).status_code == 409
    assert client.get("/api/v1/endpoints", headers=ds).json["items"] == []
    assert client.get(url, headers=ds).json["items"] == []


def test_predictions_refuse_bad_instances(client, ml, ds, app):
    model = model_with_versions(client, ds, name="guarded")
    endpoint = wait_ended(client, ml, deploy(client, ml, model["id"]))["endpoint"]
    wait_for(lambda: predict(client, ds, endpoint).status_code == 200, timeout=10, what="the version to serve")
    missing = predict(client, ds, endpoint, [iris_row(), {"sepal_length": 1.0}])
    assert missing.status_code == 422 and "1" in str(missing.json["errors"])
    assert predict(client, ds, endpoint, [iris_row(sepal_width="wide")]).status_code == 422
    assert predict(client, ds, endpoint, [iris_row(colour=1)]).status_code == 422
    assert predict(client, ds, endpoint, []).status_code == 422
    assert client.post(f"/api/v1/endpoints/{endpoint}/predict", json={"rows": []}, headers=ds).status_code == 422
    assert predict(client, ds, endpoint, [iris_row()] * 10_001).status_code == 413
    assert predict(client, ds, "no-such-endpoint").status_code == 404
    assert predict(client, bearer(app, "viewer"), endpoint).status_code == 403
    assert client.post(f"/api/v1/endpoints/{endpoint}/predict", json={"instances": [iris_row()]}).status_code == 401


def test_an_endpoint_whose_only_deployment_failed_serves_nothing(client, ml, ds):
    model = create_model(client, ds, features=["x"])
    assert upload_version(client, ds, model["id"], b"junk").status_code == 201
    failed = wait_ended(client, ml, deploy(client, ml, model["id"]))
    assert failed["status"] == "failed"
    answer = predict(client, ds, failed["endpoint"], [{"x": 1.0}])
    assert answer.status_code == 503 and answer.mimetype == "application/problem+json"
    assert "Nothing is live" in answer.json["detail"]


# Replicas hear events where there is a broker: make stack, compose and Kubernetes, all on Postgres;
# make run (SQLite) has none and its replica polls (tests/e2e/test_make_run.py).
@pytest.mark.postgres_only
def test_replicas_follow_traffic_changes_by_event_alone(make_app, settings_overrides, ml, ds):
    # No poll in this replica: only the endpoint.traffic_changed events can tell it anything.
    client = make_app({**settings_overrides, "replica_poll_seconds": 3600}).test_client()
    model = model_with_versions(client, ds, count=2)
    first = wait_ended(client, ml, deploy(client, ml, model["id"], version=1))
    assert served_version(client, ds, first["endpoint"]) == 1
    second = wait_ended(client, ml, deploy(client, ml, model["id"], version=2))
    wait_for(lambda: served_version(client, ds, first["endpoint"]) == 2, timeout=5, what="the switch's event")
    rolled_at = time.monotonic()
    assert client.post(f"/api/v1/deployments/{second['id']}/rollback", headers=ml).status_code == 200
    wait_for(lambda: served_version(client, ds, first["endpoint"]) == 1, timeout=5, what="version 1 again")
    # Quiet, this takes a few hundred milliseconds (the relay's poll, the broker, one desired-state read);
    # the headroom is for a machine busy with the rest of the suite. Without the event: never.
    assert time.monotonic() - rolled_at < 2.0


def test_a_replica_that_misses_the_events_converges_by_polling(client, ml, ds, monkeypatch, settings_overrides):
    monkeypatch.setattr(switch, "notify", lambda endpoint: None)
    model = model_with_versions(client, ds, count=2)
    first = wait_ended(client, ml, deploy(client, ml, model["id"], version=1))
    assert served_version(client, ds, first["endpoint"]) == 1
    second = wait_ended(client, ml, deploy(client, ml, model["id"], version=2))
    assert served_version(client, ds, first["endpoint"]) == 2  # the switch written ahead was polled in time
    assert client.post(f"/api/v1/deployments/{second['id']}/rollback", headers=ml).status_code == 200
    wait_for(lambda: served_version(client, ds, first["endpoint"]) == 1,
             timeout=settings_overrides["replica_poll_seconds"] * 2 + 1, what="the poll to bring version 1 back")
