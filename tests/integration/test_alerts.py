"""Alerts on a real Celery worker: a rule fires one alert while its condition holds, resolves when it
clears, and each change reaches the rule's webhook, retried until a local HTTP server accepts it, signed
with the rule's secret. Rules are ml_engineers' to write; bad rules are refused and change nothing."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from services.monitoring import webhook_secrets, webhooks
from services.monitoring.service import EVALUATE_ALERTS
from services.monitoring.tables import AlertRule
from shared.config import load_settings
from shared.events.outbox import OutboxEvent
from shared.tasks import task_sender
from tests.conftest import RUN_ID
from tests.support.deployments import model_with_versions
from tests.support.polling import wait_for
from tests.support.registry import bearer
from tests.support.training import celery_worker, training_settings

pytestmark = pytest.mark.integration

RULES, ALERTS, PREDICTIONS = "/api/v1/alert-rules", "/api/v1/alerts", "/api/v1/monitoring/predictions"


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return {**training_settings(database_url, servers, tmp_path_factory.mktemp("alerts"), RUN_ID),
            "webhook_allow_private": True}


@pytest.fixture
def settings_overrides(settings):
    return settings


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log", pools=("default",)) as running:
        yield running


@pytest.fixture
def engineer(app):
    return bearer(app, "ml_engineer", "erin")


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that fails its first request with a 500 and accepts the rest."""

    received: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(500 if len(self.received) == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/modelyard", Receiver.received
    server.shutdown()


def _predictions(client, ds, model_id: str, count: int, errors: int, first: int) -> None:
    records = [{"model_id": model_id, "request_id": f"r-{first + n}", "latency_ms": 10.0,
                **({"error": "the model raised"} if n < errors else {"prediction": 1})} for n in range(count)]
    assert client.post(PREDICTIONS, json={"records": records}, headers=ds).json["stored"] == count


def test_an_alert_fires_once_reaches_its_webhook_after_a_retry_and_resolves(
        app, client, ds, engineer, settings, worker, receiver):
    url, received = receiver
    model = model_with_versions(client, ds)
    created = client.post(RULES, json={"name": "errors", "model_id": model["name"], "metric": "error_rate",
                                       "threshold": 5, "window_minutes": 60, "webhook_url": url}, headers=engineer)
    assert created.status_code == 201, created.json
    rule = created.json
    assert rule["model_id"] == model["id"] and rule["webhook_secret"]
    shown = client.get(f"{RULES}/{rule['id']}", headers=engineer).json
    assert "webhook_secret" not in shown and shown["webhook_url"] == url  # the secret is shown once
    with app.extensions["modelyard"].db.transaction() as session:  # and stored sealed, not as it is
        stored = session.get(AlertRule, uuid.UUID(rule["id"])).webhook_secret
    keys = app.extensions["modelyard"].settings.artifact_keys
    assert rule["webhook_secret"] not in stored
    assert webhook_secrets.unseal(stored, keys=keys, rule_id=uuid.UUID(rule["id"])) == rule["webhook_secret"]
    # Below ml_engineer, the URL's origin only: its path is often a credential.
    origin = url.split("/hooks")[0] + "/..."
    assert client.get(f"{RULES}/{rule['id']}", headers=ds).json["webhook_url"] == origin
    sender, loaded = task_sender(load_settings(settings)), load_settings(settings)

    def evaluate(times: int) -> None:
        sender.send_task(EVALUATE_ALERTS, queue=loaded.task_queue("default"))
        wait_for(lambda: len(re.findall(r"Task alerts\.evaluate\[[^]]+\] succeeded", worker.log())) >= times,
                 what=f"evaluation {times}")

    _predictions(client, ds, model["id"], 20, errors=4, first=0)  # 20% failed
    evaluate(1)
    # By rule: the brief's own error-rate rule for every model may fire too, when this runs on a fresh database.
    [alert] = client.get(f"{ALERTS}?state=firing&rule_id={rule['id']}", headers=ds).json["items"]
    assert (alert["rule_id"], alert["metric"], alert["value"], alert["threshold"]) == (rule["id"], "error_rate", 20, 5)
    evaluate(2)  # still above: the same alert, not a second one
    assert [item["id"] for item in client.get(f"{ALERTS}?rule_id={rule['id']}", headers=ds).json["items"]] == \
        [alert["id"]]

    # The first delivery got a 500; the retry, about ten seconds later, a 200. Both signed, one event id.
    wait_for(lambda: len(received) == 2, timeout=30, what="the retried delivery")
    for headers, body in received:
        assert webhooks.verify(rule["webhook_secret"].encode(), headers["X-Modelyard-Signature"], body, now=time.time())
        assert headers["X-Modelyard-Event-Id"] == f"{alert['id']}:alert.fired"
    sent = json.loads(received[1][1])
    assert (sent["event"], sent["alert"]["alert_id"], sent["alert"]["value"]) == ("alert.fired", alert["id"], 20.0)
    log = wait_for(lambda: len(client.get(f"{ALERTS}/{alert['id']}", headers=ds).json["deliveries"]) == 2
                   and client.get(f"{ALERTS}/{alert['id']}", headers=ds).json["deliveries"], what="the delivery log")
    assert [(entry["attempt"], entry["delivered"], entry["status_code"]) for entry in log] == \
        [(1, False, 500), (2, True, 200)]
    assert log[0]["next_attempt_at"] is not None and log[1]["next_attempt_at"] is None

    assert client.post(f"{ALERTS}/{alert['id']}/acknowledge", headers=ds).status_code == 403
    acknowledged = client.post(f"{ALERTS}/{alert['id']}/acknowledge", headers=engineer).json
    assert (acknowledged["state"], acknowledged["acknowledged_by"]) == ("acknowledged", "erin")

    _predictions(client, ds, model["id"], 200, errors=0, first=20)  # 4 of 220 now: 1.8%
    evaluate(3)
    resolved = client.get(f"{ALERTS}/{alert['id']}", headers=ds).json
    assert resolved["state"] == "resolved" and resolved["value"] == pytest.approx(400 / 220)
    wait_for(lambda: len(received) == 3, what="the resolution's delivery")
    assert json.loads(received[2][1])["event"] == "alert.resolved"
    assert client.post(f"{ALERTS}/{alert['id']}/acknowledge", headers=engineer).status_code == 409
    with app.extensions["modelyard"].db.transaction() as session:
        events = session.scalars(sa.select(OutboxEvent).where(OutboxEvent.type.like("alert.%"))
                                 .order_by(OutboxEvent.seq)).all()
    assert [event.type for event in events if event.envelope["payload"]["rule_id"] == rule["id"]] == \
        ["alert.fired", "alert.resolved"]


def test_rules_are_ml_engineers_to_write_and_bad_ones_change_nothing(app, client, ds, engineer):
    model = model_with_versions(client, ds)
    good = {"name": "drift", "model_id": model["id"], "metric": "drift_score", "threshold": 0.3}
    assert client.post(RULES, json=good, headers=ds).status_code == 403
    bad = [
        ({**good, "metric": "mood"}, "metric"),
        ({**good, "threshold": "high"}, "threshold"),
        ({k: v for k, v in good.items() if k != "threshold"}, "threshold"),
        ({**good, "model_id": "no-such-model"}, "model_id"),
        ({**good, "window_minutes": 0}, "window_minutes"),
        ({**good, "webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({**good, "colour": "red"}, "colour"),
        ({**good, "threshold": 3}, "threshold"),  # a drift score is in [0, 1]
        ({**good, "metric": "error_rate", "threshold": -1}, "threshold"),
    ]
    for body, field in bad:
        answer = client.post(RULES, json=body, headers=engineer)
        assert answer.status_code == 422 and field in answer.json["errors"], (body, answer.json)
    with app.extensions["modelyard"].db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AlertRule)) == 0

    rule = client.post(RULES, json=good, headers=engineer).json
    assert "webhook_secret" not in rule
    changed = client.patch(f"{RULES}/{rule['id']}", json={"threshold": 0.5, "enabled": False}, headers=engineer).json
    assert (changed["threshold"], changed["enabled"]) == (0.5, False)
    assert client.patch(f"{RULES}/{rule['id']}", json={"metric": "error_rate"}, headers=engineer).status_code == 422
    assert client.patch(f"{RULES}/{rule['id']}", json={"threshold": 1.5}, headers=engineer).status_code == 422
    # A new webhook URL gets a new secret, shown once: the new receiver never holds the old one's key.
    first = client.patch(f"{RULES}/{rule['id']}", json={"webhook_url": "https://93.184.215.14/a"}, headers=engineer)
    second = client.patch(f"{RULES}/{rule['id']}", json={"webhook_url": "https://93.184.215.14/b"}, headers=engineer)
    assert first.json["webhook_secret"] and second.json["webhook_secret"] != first.json["webhook_secret"]
    listed = client.get(f"{RULES}?model_id={model['id']}", headers=ds).json["items"]
    assert [item["id"] for item in listed] == [rule["id"]]
    assert client.delete(f"{RULES}/{rule['id']}", headers=engineer).status_code == 204
    assert client.get(f"{RULES}/{rule['id']}", headers=ds).status_code == 404
    assert client.post(f"{ALERTS}/{rule['id']}/acknowledge", headers=engineer).status_code == 404


def test_a_webhook_to_a_private_address_is_refused_when_saved(client, ds, make_app, settings_overrides):
    guarded = make_app({**settings_overrides, "webhook_allow_private": False}).test_client()
    engineer_headers = bearer(guarded.application, "ml_engineer", "erin")
    for url in ("http://127.0.0.1:8080/hook", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/"):
        answer = guarded.post(RULES, json={"name": "x", "metric": "error_rate", "threshold": 5, "webhook_url": url},
                              headers=engineer_headers)
        assert answer.status_code == 422 and "webhook_url" in answer.json["errors"], url
