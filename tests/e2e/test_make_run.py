"""`make run` itself: start the embedded platform and walk a new user's first session over HTTP.

login -> create model -> upload a version -> set an alias -> read its lineage, then download the
artifact and see an event leave through the outbox. This is the suite's one SQLite test.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("var")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        "MODELYARD_VAR_DIR": str(var_dir),
        "MODELYARD_BIND": f"127.0.0.1:{port}",
        "MODELYARD_ADMIN_PASSWORD": "first-admin-pw",
    }
    log = open(var_dir / "run.log", "w")
    proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("make run exited early:\n" + (var_dir / "run.log").read_text())
            try:
                if requests.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or still starting up on a busy machine
            time.sleep(0.2)
        else:
            pytest.fail("make run did not become ready:\n" + (var_dir / "run.log").read_text())
        yield base, var_dir
    finally:
        # Also when start-up failed: a platform left running would outlive the test run.
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_make_run_prints_where_it_listens_and_how_to_log_in(platform):
    base, var_dir = platform
    output = (var_dir / "run.log").read_text()
    assert f"listening on {base}" in output
    assert "Log in as 'admin'" in output


def test_a_new_user_walks_from_login_to_lineage(platform):
    base, _ = platform
    http = requests.Session()
    token = http.post(f"{base}/api/v1/auth/token", json={"username": "admin", "password": "first-admin-pw"})
    assert token.status_code == 200, token.text
    http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    model = http.post(f"{base}/api/v1/models", json={"name": "churn", "type": "classification",
                                                     "framework": "scikit_learn"})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]

    artifact = b"not a real model, just bytes" * 100
    version = http.post(
        f"{base}/api/v1/models/{model_id}/versions",
        files={"artifact": ("model.skops", io.BytesIO(artifact))},
        data={"metadata": json.dumps({"metrics": {"accuracy": 0.9}})},
    )
    assert version.status_code == 201, version.text
    assert version.json()["number"] == 1

    alias = http.put(f"{base}/api/v1/models/{model_id}/aliases/champion", json={"version": 1})
    assert alias.status_code == 200, alias.text

    lineage = http.get(f"{base}/api/v1/models/{model_id}/versions/1/lineage")
    assert lineage.status_code == 200, lineage.text
    assert any(node["type"] == "model_version" for node in lineage.json()["nodes"])

    download = http.get(f"{base}/api/v1/models/{model_id}/versions/1/artifact")
    assert download.status_code == 200
    assert download.content == artifact
    assert download.headers["ETag"].strip('"') == version.json()["artifact_sha256"]

    fetched = http.get(f"{base}/api/v1/models/{model_id}").json()
    assert fetched["latest_version"] == 1


def test_events_leave_the_outbox_to_local_subscribers(platform):
    import sqlite3

    _, var_dir = platform
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(var_dir / "modelyard.db") as conn:
            sent, unsent = conn.execute(
                "SELECT count(sent_at), count(*) - count(sent_at) FROM outbox"
            ).fetchone()
        if (sent and not unsent) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sent >= 1 and unsent == 0


def test_a_small_training_runs_on_the_embedded_worker_and_registers_a_version(platform):
    base, _ = platform
    http = requests.Session()
    token = http.post(f"{base}/api/v1/auth/token", json={"username": "admin", "password": "first-admin-pw"})
    http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    rows = "\n".join(f"{i % 7},{(i * 3) % 11},{'yes' if (i % 7) + (i * 3) % 11 > 8 else 'no'}" for i in range(60))
    dataset = http.post(f"{base}/api/v1/datasets",
                        files={"file": ("tiny.csv", io.BytesIO(f"a,b,label\n{rows}\n".encode()))})
    assert dataset.status_code == 201, dataset.text
    model = http.post(f"{base}/api/v1/models", json={"name": "tiny", "type": "classification",
                                                     "framework": "scikit_learn", "target_variable": "label"})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]

    accepted = http.post(f"{base}/api/v1/models/{model_id}/trainings", json={
        "dataset_id": dataset.json()["id"], "estimator": "logistic_regression", "cross_validation_folds": 3,
        "optimization": {"strategy": "random", "max_trials": 2}})
    assert accepted.status_code == 202, accepted.text
    assert http.get(f"{base}/api/v1/models/{model_id}").json()["status"] in ("registered", "training")  # now cached
    deadline = time.monotonic() + 60
    while True:
        job = http.get(base + accepted.json()["url"]).json()
        if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert job["status"] == "succeeded", job
    version = http.get(f"{base}/api/v1/models/{model_id}/versions/{job['version_number']}").json()
    assert version["provenance"] == "trained" and version["training_job_id"] == job["id"]
    # The event consumers changed the status in the web process itself, so its cache saw the change.
    assert http.get(f"{base}/api/v1/models/{model_id}").json()["status"] == "trained"
