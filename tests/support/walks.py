"""A new user's first session over HTTP, walked against a running platform (`make run` or `make stack`)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support.deployments import ENDED, FEATURES, QUICK, skops_model
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Platform:
    """`make <target>` in its own process group, with its output in `log_path`; stopped by `stop()`."""

    def __init__(self, target: str, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(["make", target], cwd=ROOT, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, url: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("the platform exited early:\n" + self.output())
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or still starting up on a busy machine
            time.sleep(0.2)
        pytest.fail(f"the platform did not answer 200 at {url} within {timeout:.0f} s:\n" + self.output())

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self._log.close()


def login(base: str, password: str) -> requests.Session:
    http = requests.Session()
    token = http.post(f"{base}/api/v1/auth/token", json={"username": "admin", "password": password})
    assert token.status_code == 200, token.text
    http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return http


def walk_to_lineage(http: requests.Session, base: str, name: str = "churn") -> str:
    """create model -> upload a version -> set an alias -> read its lineage -> download; the model's id."""
    model = http.post(f"{base}/api/v1/models", json={"name": name, "type": "classification",
                                                     "framework": "scikit_learn"})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]

    artifact = b"not a real model, just bytes" * 100
    version = http.post(
        f"{base}/api/v1/models/{model_id}/versions",
        files={"artifact": ("model.bin", io.BytesIO(artifact))},
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
    assert fetched["latest_version"] == 1 and fetched["aliases"] == {"champion": 1}
    return model_id


def train_tiny_model(http: requests.Session, base: str, name: str = "tiny") -> str:
    """Upload a small CSV, train on it with two random trials, and see the trained version registered;
    the model's id."""
    rows = "\n".join(f"{i % 7},{(i * 3) % 11},{'yes' if (i % 7) + (i * 3) % 11 > 8 else 'no'}" for i in range(60))
    dataset = http.post(f"{base}/api/v1/datasets",
                        files={"file": ("tiny.csv", io.BytesIO(f"a,b,label\n{rows}\n".encode()))})
    assert dataset.status_code in (200, 201), dataset.text  # 200: the same bytes, uploaded before
    model = http.post(f"{base}/api/v1/models", json={"name": name, "type": "classification",
                                                     "framework": "scikit_learn", "target_variable": "label"})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]

    accepted = http.post(f"{base}/api/v1/models/{model_id}/trainings", json={
        "dataset_id": dataset.json()["id"], "estimator": "logistic_regression", "cross_validation_folds": 3,
        "optimization": {"strategy": "random", "max_trials": 2}})
    assert accepted.status_code == 202, accepted.text
    assert http.get(f"{base}/api/v1/models/{model_id}").json()["status"] in ("registered", "training")  # now cached

    def ended() -> dict | None:
        job = http.get(base + accepted.json()["url"]).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(ended, timeout=60, interval=0.5, what="the training to end")
    assert job["status"] == "succeeded", job
    version = http.get(f"{base}/api/v1/models/{model_id}/versions/{job['version_number']}").json()
    assert version["provenance"] == "trained" and version["training_job_id"] == job["id"]
    return model_id


def served_model(http: requests.Session, base: str, name: str, versions: int) -> dict:
    """A model of the deployment tests' FEATURES with `versions` uploaded skops versions, over HTTP."""
    model = http.post(f"{base}/api/v1/models", json={"name": name, "type": "classification",
                                                     "framework": "scikit_learn", "features": FEATURES}).json()
    for seed in range(versions):
        upload = http.post(f"{base}/api/v1/models/{model['id']}/versions",
                           files={"artifact": ("model.skops", skops_model(seed))})
        assert upload.status_code == 201, upload.text
    return model


def deploy_and_wait(http: requests.Session, base: str, model_id: str, **body) -> dict:
    """Deploy (with quick health checks) and follow the rollout over HTTP to where it ended."""
    accepted = http.post(f"{base}/api/v1/models/{model_id}/deployments", json={**QUICK, **body})
    assert accepted.status_code == 202, accepted.text
    url = f"{base}{accepted.json()['url']}"
    return wait_for(lambda: (found := http.get(url).json())["status"] in ENDED and found, timeout=60,
                    what=f"version {body.get('version')}'s rollout")


@contextmanager
def embedded_platform(var_dir: Path, password: str) -> Iterator[tuple[str, Platform, dict[str, str]]]:
    """`make run` on a free port with its own var dir and admin password: (its base URL, its process, the
    environment it runs in, without this process's MODELYARD_ settings); stopped on leaving, also when
    start-up failed (a platform left running would outlive the test run)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        "MODELYARD_VAR_DIR": str(var_dir),
        "MODELYARD_BIND": f"127.0.0.1:{port}",
        "MODELYARD_ADMIN_PASSWORD": password,
    }
    run = Platform("run", env, var_dir / "run.log")
    base = f"http://127.0.0.1:{port}"
    try:
        run.wait_ready(base + "/readyz")
        yield base, run, env
    finally:
        run.stop()
