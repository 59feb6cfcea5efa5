"""`make run` itself: start the embedded platform and walk a new user's first session over HTTP.

login -> create model -> upload a version -> set an alias -> read its lineage, then download the
artifact and see an event leave through the outbox; the brief's example 5 on a trained, deployed model, and
its example 4 started between an old and a new model.
(The integration tier runs on SQLite too; this is the embedded platform as its processes really start.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests

from tests.support.deployments import iris_row
from tests.support.polling import wait_for
from tests.support.walks import (
    deploy_and_wait, embedded_platform, login, served_model, train_tiny_model, walk_to_lineage,
)

pytestmark = pytest.mark.e2e

PASSWORD = "first-admin-pw"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with embedded_platform(tmp_path_factory.mktemp("var"), PASSWORD) as (base, run, _):
        yield base, run


def test_make_run_prints_where_it_listens_and_how_to_log_in(platform):
    base, run = platform
    output = run.output()
    assert f"listening on {base}" in output
    assert "Log in as 'admin'" in output


def test_a_new_user_walks_from_login_to_lineage(platform):
    base, _ = platform
    walk_to_lineage(login(base, PASSWORD), base)


def test_events_leave_the_outbox_to_local_subscribers(platform):
    _, run = platform

    def all_sent() -> bool:
        with sqlite3.connect(run.log_path.parent / "modelyard.db") as conn:
            sent, unsent = conn.execute("SELECT count(sent_at), count(*) - count(sent_at) FROM outbox").fetchone()
        return sent >= 1 and unsent == 0

    wait_for(all_sent, timeout=10, interval=0.2, what="every event to leave the outbox")


def test_a_small_training_runs_on_the_embedded_worker_and_registers_a_version(platform):
    base, _ = platform
    http = login(base, PASSWORD)
    model_id = train_tiny_model(http, base)
    # The event consumers changed the status in the web process itself, so its cache saw the change.
    assert http.get(f"{base}/api/v1/models/{model_id}").json()["status"] == "trained"


def test_predictions_are_served_by_a_process_of_their_own_and_follow_a_rollback(platform):
    base, _ = platform
    http = login(base, PASSWORD)
    model = served_model(http, base, "run-served", versions=2)

    def deploy(version: int) -> dict:
        return deploy_and_wait(http, base, model["id"], environment="development", version=version)

    def served() -> int:
        answer = http.post(f"{base}/api/v1/endpoints/{first['endpoint']}/predict", json={"instances": [iris_row()]})
        assert answer.status_code == 200, answer.text
        return answer.json()["model_version"]

    first = deploy(1)
    assert first["status"] == "live" and served() == 1
    second = deploy(2)
    assert second["status"] == "live" and served() == 2
    assert http.post(f"{base}/api/v1/deployments/{second['id']}/rollback").status_code == 200
    wait_for(lambda: served() == 1, timeout=2, what="the rollback to reach the serving process")
    # The answers come from the serving process, through the web process, problems included.
    refused = requests.post(f"{base}/api/v1/endpoints/{first['endpoint']}/predict", json={"instances": []})
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"
    # The replica that reports on the endpoint is a worker of the serving server, not of the web one.
    [replica] = http.get(f"{base}/api/v1/endpoints/{first['endpoint']}").json()["replicas"]
    pid = int(replica["replica"].rsplit(":", 1)[1])
    assert b"service_app('serving')" in Path(f"/proc/{pid}/cmdline").read_bytes()
    # Its figures are in the one /metrics a user can reach: the predictions' latencies, the records it sent.
    wait_for(lambda: 'modelyard_prediction_log_sent_records_total ' in http.get(f"{base}/metrics").text, timeout=5,
             what="the serving process's figures in /metrics")
    assert f'endpoint="{first["endpoint"]}"' in http.get(f"{base}/metrics").text


def test_the_briefs_example_5_records_predictions_and_metrics_and_reads_drift_and_performance(platform):
    base, _ = platform
    http = login(base, PASSWORD)
    model_id = train_tiny_model(http, base, name="watched")
    deployed = deploy_and_wait(http, base, model_id, environment="development")
    assert deployed["status"] == "live", deployed
    for i in range(40):  # served predictions: serving records them, features included
        answer = http.post(f"{base}/api/v1/endpoints/{deployed['endpoint']}/predict",
                           json={"instances": [{"a": i % 7, "b": (i * 5) % 11}]})
        assert answer.status_code == 200, answer.text

    # The brief's example 5, as written.
    recorded = http.post(f"{base}/api/v1/monitoring/predictions", json={
        "model_id": model_id, "prediction": {"prediction": 0.85, "confidence": 0.92}, "actual": {"actual": 1},
        "context": {"request_id": "req-123", "user_id": "user-456"}})
    assert recorded.status_code == 202 and recorded.json()["stored"] == 1, recorded.text
    metrics = http.post(f"{base}/api/v1/monitoring/metrics", json={
        "model_id": model_id, "metrics": {"accuracy": 0.87, "precision": 0.85, "recall": 0.89, "f1_score": 0.87,
                                          "latency": 150, "throughput": 100},
        "context": {"batch_size": 100, "timestamp": "2026-12-04T10:00:00Z"}})
    assert metrics.status_code == 202, metrics.text

    def drift() -> dict | None:
        answer = http.get(f"{base}/api/v1/models/{model_id}/drift?refresh=true")
        return answer.json() if answer.status_code == 200 and answer.json()["window"]["rows"] == 40 else None

    report = wait_for(drift, timeout=20, what="the served predictions to reach monitoring's store")
    assert 0 <= report["overall_drift_score"] <= 1 and report["severity"] in ("none", "low", "medium", "high", "critical")
    assert {feature["name"]: feature["test"] for feature in report["features"]} == {"a": "ks", "b": "ks"}
    assert report["prediction_drift"] is not None
    performance = http.get(f"{base}/api/v1/models/{model_id}/performance?days=30")
    assert performance.status_code == 200, performance.text
    assert performance.json()["summary"]["predictions"] == 41 and performance.json()["series"]
    # The metrics count where they measure: 2026-12-04, within the longest window whatever today is.
    assert http.get(f"{base}/api/v1/models/{model_id}/performance?days=366").json()["summary"]["metrics"] == {
        "accuracy": 0.87, "f1": 0.87, "latency": 150.0, "precision": 0.85, "recall": 0.89, "throughput": 100.0}


def test_the_briefs_example_4_starts_an_ab_test_between_an_old_and_a_new_model(platform):
    base, _ = platform
    http = login(base, PASSWORD)
    old, new = train_tiny_model(http, base, name="old churn"), train_tiny_model(http, base, name="new churn")
    deployed = deploy_and_wait(http, base, old, environment="production")
    assert deployed["status"] == "live", deployed

    # The brief's example 4, as written, then started.
    created = http.post(f"{base}/api/v1/ab-tests", json={
        "name": "Churn Model Comparison", "description": "Compare new vs old churn prediction models",
        "type": "traffic_split", "model_a_id": old, "model_b_id": new, "traffic_split": 0.5,
        "test_config": {"duration": 14, "sample_size": 10000},
        "success_metrics": ["accuracy", "precision", "recall", "f1_score"],
        "guardrail_metrics": ["latency", "error_rate", "business_impact"],
        "min_sample_size": 5000, "max_duration_days": 30, "significance_level": 0.05})
    assert created.status_code == 201 and created.json()["status"] == "draft", created.text
    started = http.post(f"{base}/api/v1/ab-tests/{created.json()['id']}/start")
    assert started.status_code == 200 and started.json()["status"] == "running", started.text

    def models_answering() -> set[str] | None:
        answers = [http.post(f"{base}/api/v1/endpoints/{deployed['endpoint']}/predict",
                             json={"instances": [{"a": 1, "b": 2}], "unit_id": f"user-{n}"}).json()
                   for n in range(40)]
        found = {answer["model_id"] for answer in answers}
        return found if found == {old, new} else None

    # Both models answer on the old one's endpoint, each unit by its arm, once B passed its health check.
    wait_for(models_answering, timeout=60, interval=0.5, what="both arms to answer")
