"""`make stack` itself: every service under gunicorn behind nginx, on the real Postgres, RabbitMQ and Redis.

The same first session as `make run`'s, then what only the distributed stack does: the events leave
through RabbitMQ (a probe queue bound to the run's exchange receives them), the relay's process seals
the audit chain, a training reaches the registry over HTTP, and each service counts its requests for
Prometheus across its gunicorn workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from kombu import Connection, Queue

from launch.openapi import document
from launch.stack import ports
from shared.events import topology
from tests.conftest import RUN_ID
from tests.support.databases import drop_database
from tests.support.deployments import iris_row
from tests.support.polling import wait_for
from tests.support.walks import (
    Platform, deploy_and_wait, free_port, login, served_model, train_tiny_model, walk_to_lineage,
)

pytestmark = pytest.mark.e2e

PASSWORD = "stack-admin-pw"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def database(servers):
    """A fresh database for the stack, which creates its schema itself; dropped afterwards."""
    url = sa.make_url(servers["DATABASE"]).set(drivername="postgresql+psycopg")
    name = f"modelyard_stack_{RUN_ID}"
    yield url.set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    drop_database(admin, name)
    admin.dispose()


@pytest.fixture(scope="module")
def events(servers):
    """A probe queue on the run's own exchange, declared before the stack publishes anything."""
    exchange = f"modelyard.events.stack.{RUN_ID}"
    with Connection(servers["BROKER"]) as connection:
        queue = Queue(f"{exchange}.probe-{uuid.uuid4().hex[:8]}", topology.events_exchange(exchange),
                      routing_key="#", exclusive=True)
        queue.bind(connection.default_channel).declare()
        yield exchange, connection.SimpleQueue(queue)


@pytest.fixture(scope="module")
def stack(servers, database, events, tmp_path_factory):
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.skip("make stack needs nginx as its gateway (apt-get install nginx)")
    taken = [port for port in ports().values() if _listening(port)]
    if taken:
        pytest.skip(f"ports {taken} are taken: a stack is already running here")
    var_dir = tmp_path_factory.mktemp("stack")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        "MODELYARD_VAR_DIR": str(var_dir),
        "MODELYARD_DATABASE_URL": database,
        "MODELYARD_BROKER_URL": servers["BROKER"],
        "MODELYARD_EVENTS_URL": servers["BROKER"],
        "MODELYARD_EVENTS_EXCHANGE": events[0],
        "MODELYARD_REDIS_URL": servers["REDIS"],
        "MODELYARD_CACHE_PREFIX": f"modelyard-stack-{RUN_ID}:",
        "MODELYARD_TASK_QUEUE_PREFIX": f"stack-{RUN_ID}-",
        "MODELYARD_GATEWAY_PORT": str(port),
        "MODELYARD_ADMIN_PASSWORD": PASSWORD,
    }
    run = Platform("stack", env, var_dir / "stack.log")
    base = f"http://127.0.0.1:{port}"
    try:
        # The gateway answers before the services behind it: wait for each of them too.
        run.wait_ready(base + "/api/v1/openapi.json", timeout=120)
        for service_port in ports().values():
            run.wait_ready(f"http://127.0.0.1:{service_port}/readyz", timeout=60)
        yield base, run
    finally:
        run.stop()


def test_make_stack_prints_where_it_listens_and_how_to_log_in(stack):
    base, run = stack
    assert f"gateway {base}" in run.output()
    assert "Log in as 'admin'" in run.output()


def test_the_gateway_serves_one_api_document_for_every_service(stack):
    base, _ = stack
    served = requests.get(f"{base}/api/v1/openapi.json", timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"].startswith("application/json")
    # What make run serves: identity's, the registry's and training's routes in one document.
    assert served.json() == document()
    assert {"/api/v1/auth/token", "/api/v1/models", "/api/v1/trainings/{job_id}"} <= set(served.json()["paths"])


def test_the_api_docs_and_the_dashboards_answer_through_the_gateway(stack):
    base, _ = stack
    docs = requests.get(f"{base}/api/v1/docs", timeout=10)
    assert docs.status_code == 200 and '<redoc spec-url="/api/v1/openapi.json">' in docs.text
    assert requests.get(f"{base}/api/v1/docs/assets/redoc.standalone.js", timeout=10).status_code == 200
    browser = requests.Session()
    login_page = browser.get(f"{base}/monitoring/models", timeout=10)  # signed out: to the sign-in page
    assert login_page.url == f"{base}/monitoring/login?next=/monitoring/models"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_page.text).group(1)
    # Signing in asks identity over HTTP (MODELYARD_IDENTITY_URL); nginx forwards the Host without its port.
    signed = browser.post(f"{base}/monitoring/login", data={"username": "admin", "password": PASSWORD,
                                                            "csrf_token": csrf, "next": "/monitoring/models"},
                          headers={"Origin": base}, timeout=10)
    assert signed.status_code == 200 and signed.url == f"{base}/monitoring/models" and "admin (admin)" in signed.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', signed.text).group(1)
    foreign = browser.post(f"{base}/monitoring/logout", data={"csrf_token": csrf},
                           headers={"Origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 403


def test_a_new_user_walks_from_login_to_lineage_through_the_gateway(stack, events):
    base, _ = stack
    http = login(base, PASSWORD)
    model_id = walk_to_lineage(http, base, name="stack-churn")
    duplicate = http.post(f"{base}/api/v1/models", json={"name": "stack-churn", "type": "classification",
                                                         "framework": "scikit_learn"})
    assert duplicate.status_code == 409 and duplicate.headers["Content-Type"] == "application/problem+json"

    received: list[dict] = []

    def model_events() -> list[str]:
        with contextlib.suppress(events[1].Empty):
            while True:
                message = events[1].get(timeout=0.2)
                received.append(message.payload)
                message.ack()
        return [e["type"] for e in received if e["payload"].get("model_id") == model_id]

    wait_for(lambda: {"model.created", "model_version.registered", "model_version.alias_set"} <= set(model_events()),
             timeout=20, what="the model's events on RabbitMQ")
    assert model_events().count("model.created") == 1  # the refused duplicate sent nothing


def test_the_relay_seals_the_audit_chain(stack):
    base, _ = stack
    http = login(base, PASSWORD)
    http.post(f"{base}/api/v1/models", json={"name": "stack-audited", "type": "regression",
                                             "framework": "scikit_learn"})

    def verified() -> dict | None:
        report = http.get(f"{base}/api/v1/audit/verify").json()
        return report if report["ok"] and report["entries"] >= 1 else None

    assert wait_for(verified, timeout=20, what="a sealed, verified audit chain")["first_bad_seq"] is None


def test_a_training_reaches_the_registry_over_http_and_its_outcome_reaches_the_cache(stack):
    base, _ = stack
    http = login(base, PASSWORD)
    model_id = train_tiny_model(http, base)
    # The registry's event consumer (its own process) sets the status and drops the cached model.
    wait_for(lambda: http.get(f"{base}/api/v1/models/{model_id}").json()["status"] == "trained",
             timeout=20, what="the trained status through the cache")


def test_each_service_counts_its_requests_for_prometheus(stack):
    base, _ = stack
    http = login(base, PASSWORD)  # an admin: /metrics needs a credential
    metrics = http.get(f"http://127.0.0.1:{ports()['identity']}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert 'modelyard_http_requests_total{endpoint="auth.Token",method="POST",service="identity",status="200"}' \
        in metrics.text


def test_three_deployments_under_non_stop_traffic_fail_not_one_request(stack):
    """Blue-green twice, then a canary, while clients predict without pause through the gateway: every
    answer is a success naming its version, and each client's version only ever moves forward."""
    base, _ = stack
    http = login(base, PASSWORD)
    model = served_model(http, base, "stack-served", versions=4)

    def deploy(version: int, **body) -> dict:
        ended = deploy_and_wait(http, base, model["id"], environment="production", version=version, **body)
        assert ended["status"] == "live", ended
        return ended

    endpoint = deploy(1)["endpoint"]
    answers: dict[str, list[tuple[int, int | None]]] = {f"unit-{n}": [] for n in range(4)}
    stop = threading.Event()

    def predict(unit: str) -> None:
        client = requests.Session()
        client.headers.update(http.headers)
        while not stop.is_set():
            response = client.post(f"{base}/api/v1/endpoints/{endpoint}/predict", timeout=10,
                                   json={"instances": [iris_row()], "unit_id": unit})
            answers[unit].append((response.status_code, response.json().get("model_version")))

    clients = [threading.Thread(target=predict, args=(unit,), daemon=True) for unit in answers]
    for client in clients:
        client.start()
    try:
        # Every client served once by version 1 first: on a loaded machine a thread's first request may
        # otherwise land after the next deployment, and the test would read that as a version skipped.
        wait_for(lambda: all(answers.values()), timeout=30, what="every client's first answer")
        deploy(2)
        deploy(3)
        deploy(4, strategy="canary", canary={"steps": [50, 100], "pause_seconds": 2})
        time.sleep(1)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=15)
    for unit, seen in answers.items():
        assert seen and all(status == 200 for status, _ in seen), (unit, [a for a in seen if a[0] != 200][:5])
        versions = [version for _, version in seen]
        assert versions == sorted(versions), (unit, versions)  # never back and forth
        assert versions[0] in (1, 2) and versions[-1] == 4, (unit, versions[0], versions[-1])
    assert {version for seen in answers.values() for _, version in seen} == {1, 2, 3, 4}
