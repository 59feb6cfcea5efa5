"""What alerts watch beside predictions, each learnt from another service's events on a real worker, relay
and broker: the serving replicas' CPU and memory (the deployment service's endpoint.usage_reported), and
the live deployment's own alert thresholds as the model's rules (deployment.live, .rolled_back), and the
models deleted, whose alerts resolve (model.deleted)."""

from __future__ import annotations

import http.server
import json
import re
import threading

import pytest
import sqlalchemy as sa

from services.deployment.service import REPORT_USAGE
from services.monitoring.handlers import AlertSources
from services.monitoring.service import EVALUATE_ALERTS
from services.monitoring.tables import DeletedModel, ReplicaUsage
from shared.config import load_settings
from shared.events.outbox import OutboxEvent
from shared.tasks import task_sender
from tests.conftest import RUN_ID
from tests.support.deployments import deploy, model_with_versions, skops_model, wait_ended
from tests.support.polling import wait_for
from tests.support.registry import bearer, upload_version
from tests.support.training import celery_worker, event_pipeline, training_settings

pytestmark = pytest.mark.integration

RULES, ALERTS, PREDICTIONS = "/api/v1/alert-rules", "/api/v1/alerts", "/api/v1/monitoring/predictions"
MiB = 2 ** 20


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return {**training_settings(database_url, servers, tmp_path_factory.mktemp("alert-sources"), RUN_ID),
            "webhook_allow_private": True}


@pytest.fixture
def settings_overrides(settings):
    return settings


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory):
    with event_pipeline(load_settings(settings), [AlertSources()]):
        with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log",
                           pools=("default", "deploy")) as running:
            yield running


@pytest.fixture
def engineer(app):
    return bearer(app, "ml_engineer", "erin")


class Tasks:
    """Beat's tasks, sent by hand, each waited for until the worker says it succeeded."""

    def __init__(self, settings, worker):
        self._loaded = load_settings(settings)
        self._sender, self._worker = task_sender(self._loaded), worker

    def run(self, name: str) -> None:
        done = len(re.findall(rf"Task {re.escape(name)}\[[^]]+\] succeeded", self._worker.log()))
        self._sender.send_task(name, queue=self._loaded.task_queue("default"))
        wait_for(lambda: len(re.findall(rf"Task {re.escape(name)}\[[^]]+\] succeeded", self._worker.log())) > done,
                 what=name)


@pytest.fixture
def tasks(settings, worker):
    return Tasks(settings, worker)


def _events(app, event_type: str) -> list[dict]:
    with app.extensions["modelyard"].db.transaction() as session:
        return [row.envelope for row in session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.seq))]


def _usage(app) -> dict[str, tuple[float | None, float | None]]:
    with app.extensions["modelyard"].db.transaction() as session:
        return {row.replica: (row.cpu_percent, row.memory_percent) for row in session.scalars(sa.select(ReplicaUsage))}


def _deleted(app) -> list[str]:
    with app.extensions["modelyard"].db.transaction() as session:
        return [str(model_id) for model_id in session.scalars(sa.select(DeletedModel.model_id))]


def _report(client, engineer, endpoint: str, replica: str, cpu: float, rss: int) -> None:
    answer = client.post(f"/api/v1/endpoints/{endpoint}/reports", headers=engineer, json={
        "replica": replica, "window_seconds": 30, "versions": {}, "cpu_percent": cpu, "rss_bytes": rss})
    assert answer.status_code == 204, answer.json


def _open(client, headers, rule_id: str) -> list[dict]:
    return [alert for alert in client.get(f"{ALERTS}?rule_id={rule_id}", headers=headers).json["items"]
            if alert["state"] != "resolved"]


def test_cpu_and_memory_of_a_models_replicas_fire_an_alert_in_percent_of_its_deployments_resources(
        app, client, ds, engineer, tasks):
    model = model_with_versions(client, ds)
    live = wait_ended(client, engineer, deploy(client, engineer, model["id"], deployment_config={
        "resources": {"cpu": "500m", "memory": "100Mi"}}))
    assert live["status"] == "live", live
    endpoint = live["endpoint"]
    rules = {metric: client.post(RULES, headers=engineer, json={
        "name": metric, "model_id": model["id"], "metric": metric, "threshold": 80, "window_minutes": 5}).json
        for metric in ("cpu_percent", "memory_percent")}
    # Half a core busy of the half a core it has: 90% of its CPU; 50 MiB of 100: half its memory. And the other way.
    _report(client, engineer, endpoint, "a", cpu=45.0, rss=50 * MiB)
    _report(client, engineer, endpoint, "b", cpu=10.0, rss=90 * MiB)
    tasks.run(REPORT_USAGE)
    [announced] = _events(app, "endpoint.usage_reported")
    payload = announced["payload"]
    assert (payload["endpoint"], payload["model_id"], payload["deployment_id"], payload["cpu_cores"],
            payload["memory_bytes"]) == (endpoint, model["id"], live["id"], 0.5, 100 * MiB)
    assert [(replica["replica"], replica["cpu_percent"], replica["memory_percent"])
            for replica in payload["replicas"]] == [("a", 90.0, 50.0), ("b", 20.0, 90.0)]
    wait_for(lambda: _usage(app) == {"a": (90.0, 50.0), "b": (20.0, 90.0)}, what="monitoring's copy of the usage")

    tasks.run(EVALUATE_ALERTS)
    # The worst replica decides each: a's CPU, b's memory.
    for metric, value in (("cpu_percent", 90.0), ("memory_percent", 90.0)):
        [alert] = _open(client, ds, rules[metric]["id"])
        assert (alert["model_id"], alert["metric"], alert["state"], alert["value"]) == \
            (model["id"], metric, "firing", value)

    # Replica b went away, a calmed down: each alert resolves with the figure that cleared it.
    with app.extensions["modelyard"].db.transaction() as session:
        session.execute(sa.text("DELETE FROM replica_reports WHERE replica = 'b'"))
    _report(client, engineer, endpoint, "a", cpu=20.0, rss=60 * MiB)
    tasks.run(REPORT_USAGE)
    wait_for(lambda: _usage(app) == {"a": (40.0, 60.0)}, what="the calmer usage")
    tasks.run(EVALUATE_ALERTS)
    for metric, value in (("cpu_percent", 40.0), ("memory_percent", 60.0)):
        assert _open(client, ds, rules[metric]["id"]) == []
        [alert] = client.get(f"{ALERTS}?rule_id={rules[metric]['id']}", headers=ds).json["items"]
        assert (alert["state"], alert["value"]) == ("resolved", value)


def test_cpu_and_memory_rules_take_percentages_only(client, engineer):
    for metric in ("cpu_percent", "memory_percent"):
        for threshold in (-1, 101):
            answer = client.post(RULES, headers=engineer, json={"name": "x", "metric": metric, "threshold": threshold})
            assert answer.status_code == 422 and "threshold" in answer.json["errors"], answer.json
        assert client.post(RULES, headers=engineer, json={"name": "x", "metric": metric, "threshold": 80}).status_code \
            == 201


def _deployment_rules(client, headers, model_id: str) -> dict[str, dict]:
    return {rule["metric"]: rule for rule in client.get(f"{RULES}?model_id={model_id}&limit=500", headers=headers)
            .json["items"] if rule["deployment_id"]}


def _thresholds(rules: dict[str, dict]) -> dict[str, tuple]:
    return {metric: (rule["threshold"], rule["window_minutes"], rule["deployment_id"])
            for metric, rule in rules.items()}


def test_the_live_deployments_alert_thresholds_are_the_models_rules_until_another_replaces_them(
        app, client, ds, engineer, tasks):
    model = model_with_versions(client, ds)
    first = wait_ended(client, engineer, deploy(client, engineer, model["id"], monitoring_config={
        "alert_thresholds": {"cpu": 70, "error_rate": 2, "latency": 500}}))
    assert first["status"] == "live", first
    rules = wait_for(lambda: len(found := _deployment_rules(client, ds, model["id"])) == 3 and found,
                     what="the first deployment's rules")
    assert _thresholds(rules) == {"cpu_percent": (70.0, 5, first["id"]), "error_rate": (2.0, 15, first["id"]),
                                  "latency_p95_ms": (500.0, 15, first["id"])}
    assert rules["cpu_percent"]["name"] == "production deployment: CPU above 70% of a replica's CPU"
    # Rules like any other: ml_engineers' to change, not a data scientist's.
    assert client.patch(f"{RULES}/{rules['error_rate']['id']}", json={"threshold": 50}, headers=ds).status_code == 403
    # Its CPU rule fires: 40% of one core is 80% of the default half core.
    _report(client, engineer, first["endpoint"], "a", cpu=40.0, rss=0)
    tasks.run(REPORT_USAGE)
    wait_for(lambda: _usage(app).get("a") == (80.0, 0.0), what="monitoring's copy of the usage")
    tasks.run(EVALUATE_ALERTS)
    [cpu_alert] = _open(client, ds, rules["cpu_percent"]["id"])

    assert upload_version(client, ds, model["id"], skops_model(1), filename="model.skops").status_code == 201
    second = wait_ended(client, engineer, deploy(client, engineer, model["id"], version=2, monitoring_config={
        "alert_thresholds": {"memory": 90, "error_rate": 3, "latency": 400}}))
    assert second["status"] == "live", second
    replaced = wait_for(lambda: "memory_percent" in (found := _deployment_rules(client, ds, model["id"])) and found,
                        what="the second deployment's rules")
    assert _thresholds(replaced) == {"memory_percent": (90.0, 5, second["id"]), "error_rate": (3.0, 15, second["id"]),
                                     "latency_p95_ms": (400.0, 15, second["id"])}
    # The same rule per metric, its threshold replaced; the CPU rule is gone, and its open alert resolved.
    assert replaced["error_rate"]["id"] == rules["error_rate"]["id"]
    resolved = [event["payload"] for event in _events(app, "alert.resolved")]
    assert [(event["alert_id"], event["metric"]) for event in resolved] == [(cpu_alert["id"], "cpu_percent")]
    assert client.get(f"{ALERTS}/{cpu_alert['id']}", headers=ds).status_code == 404

    # Rolled back: the first deployment is live again, and so are its thresholds.
    assert client.post(f"/api/v1/deployments/{second['id']}/rollback", headers=engineer).status_code == 200
    back = wait_for(lambda: "cpu_percent" in (found := _deployment_rules(client, ds, model["id"])) and found,
                    what="the first deployment's rules again")
    assert _thresholds(back) == {"cpu_percent": (70.0, 5, first["id"]), "error_rate": (2.0, 15, first["id"]),
                                 "latency_p95_ms": (500.0, 15, first["id"])}


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Receiver.received
    server.shutdown()


def test_a_deleted_models_alerts_resolve_and_its_rules_stop(app, client, ds, engineer, admin, tasks, receiver):
    url, received = receiver
    model, other = model_with_versions(client, ds), model_with_versions(client, ds)
    assert wait_ended(client, engineer, deploy(client, engineer, model["id"]))["status"] == "live"
    deployments = wait_for(lambda: _deployment_rules(client, ds, model["id"]), what="the deployment's rules")
    everyone = client.post(RULES, headers=engineer, json={"name": "all", "metric": "error_rate", "threshold": 5,
                                                           "webhook_url": url}).json
    own = client.post(RULES, headers=engineer, json={"name": "own", "model_id": model["id"], "metric": "error_rate",
                                                      "threshold": 5}).json
    for which in (model, other):  # a fifth of each model's predictions failed
        records = [{"model_id": which["id"], "request_id": f"r-{n}", "latency_ms": 10.0,
                    **({"error": "the model raised"} if n < 4 else {"prediction": 1})} for n in range(20)]
        assert client.post(PREDICTIONS, json={"records": records}, headers=ds).json["stored"] == 20
    tasks.run(EVALUATE_ALERTS)
    watching = (everyone["id"], own["id"], deployments["error_rate"]["id"])
    fired = {alert["rule_id"]: alert for rule_id in watching for alert in _open(client, ds, rule_id)
             if alert["model_id"] == model["id"]}
    assert set(fired) == set(watching)
    wait_for(lambda: [sent["event"] for sent in received] == ["alert.fired", "alert.fired"], what="both firings")

    firing = client.get(f"{ALERTS}?model_id={model['id']}&state=firing", headers=ds).json["items"]
    assert client.delete(f"/api/v1/models/{model['id']}", headers=admin).status_code == 204
    wait_for(lambda: _deleted(app) == [model["id"]], what="the deletion noted")
    tasks.run(EVALUATE_ALERTS)
    # Its predictions are still in the window, but alert nobody: each open alert resolved (the brief's
    # rules' too, on a fresh database), announced as any resolution is (event and webhook); the other
    # model's alert stays.
    resolved = {event["payload"]["alert_id"] for event in _events(app, "alert.resolved")}
    assert resolved == {alert["id"] for alert in firing}
    wait_for(lambda: sorted((sent["event"], sent["alert"]["model_id"]) for sent in received) ==
             sorted([("alert.fired", model["id"]), ("alert.fired", other["id"]), ("alert.resolved", model["id"])]),
             what="the resolution's delivery")
    assert client.get(f"{ALERTS}/{fired[everyone['id']]['id']}", headers=ds).json["state"] == "resolved"
    assert [alert["model_id"] for alert in _open(client, ds, everyone["id"])] == [other["id"]]
    # The rules its deployment made are gone; its own rule stays, disabled, with its history.
    assert client.get(f"{RULES}/{deployments['error_rate']['id']}", headers=ds).status_code == 404
    assert client.get(f"{RULES}/{own['id']}", headers=ds).json["enabled"] is False
    assert client.get(f"{ALERTS}/{fired[own['id']]['id']}", headers=ds).json["state"] == "resolved"
    tasks.run(EVALUATE_ALERTS)  # and nothing fires again
    assert {event["payload"]["alert_id"] for event in _events(app, "alert.fired")
            if event["payload"]["model_id"] == model["id"]} == resolved
