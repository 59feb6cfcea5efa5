"""Modelyard's serving path as the serving benchmark drives it: `make stack` on a throwaway database, the
model registered and deployed through the API, predictions through the gateway with an API key.

Everything a user's request meets is on: nginx, authentication (an API key, checked against Postgres),
validation of the instances against the model's 30 features, and the prediction log, whose batches the
stack's Celery worker (it consumes every queue, `ingest` included) stores in monitoring's `predictions`.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.load import Connection, Request, fetch, memory, tree_pids
from bench.modelyard_driver import ModelyardStack
from bench.serving_peers import free_port

MODEL_NAME = "bench-breast-cancer-gbc"
ENDPOINT = f"{MODEL_NAME}-production"
# The brief's example 3 (../shared/BRIEF.md), as written: its health checks decide deploy-to-live.
EXAMPLE_3 = {
    "environment": "production",
    "deployment_config": {"resources": {"memory": "2Gi", "cpu": "1"}, "replicas": 3, "timeout": 30},
    "health_check_config": {"endpoint": "/health", "interval": 30, "timeout": 10, "retries": 3,
                            "success_threshold": 1, "failure_threshold": 3},
    "scaling_config": {"min_replicas": 2, "max_replicas": 10, "target_cpu_utilization": 70,
                       "target_memory_utilization": 80, "scale_up_cooldown": 300, "scale_down_cooldown": 300},
    "monitoring_config": {"enable_metrics": True, "enable_logging": True, "enable_tracing": True,
                          "alert_thresholds": {"cpu": 80, "memory": 85, "error_rate": 5, "latency": 1000}},
}
ENDED = ("live", "failed", "rolled_back", "superseded")
SERVING_APP = "launch.apps:service_app('serving')"


@dataclass(frozen=True)
class LoadTarget:
    """Where bench/load.py sends requests, with which headers, and whose process tree it watches."""

    host: str
    port: int
    headers: dict
    pid: int


class ModelyardServing:
    """The stack, the model registered and deployed, and the load target: the endpoint's predict URL."""

    name = "Modelyard"

    def __init__(self, *, postgres: str, port: int, work_dir: Path, features: list[str], rows: list[list[float]]):
        # Pickles allowed: the version that measures automatic rollback is one (bench/misbehaving.py).
        self.stack = ModelyardStack(postgres=postgres, database="modelyard_serving_bench", port=port,
                                    work_dir=work_dir, web_workers=None, env={"MODELYARD_ALLOW_PICKLE": "true"})
        self.host, self.port = self.stack.host, port
        self.features, self.probe_row = features, rows[0]
        self.base = f"http://{self.host}:{port}/api/v1"
        self.headers: dict[str, str] = {}  # the load's: JSON and the API key
        self.model_id = ""

    @property
    def pid(self) -> int:
        return self.stack.pid

    def _api(self, method: str, path: str, expect: int, **kwargs) -> Any:
        admin = {"Authorization": self.stack.headers["Authorization"]}
        answer = requests.request(method, self.base + path, headers=admin, timeout=60, **kwargs)
        if answer.status_code != expect:
            raise RuntimeError(f"{method} {path} answered {answer.status_code}: {answer.text[:500]}")
        return answer.json()

    def start(self) -> float:
        """Start the stack on a fresh database, register the model, make a data_scientist API key."""
        began = time.monotonic()
        self.stack.start()
        seconds = time.monotonic() - began
        model = self._api("POST", "/models", 201, json={
            "name": MODEL_NAME, "type": "classification", "framework": "scikit_learn", "features": self.features,
            "description": "The serving benchmark's GradientBoostingClassifier on breast_cancer"})
        self.model_id = model["id"]
        key = self._api("POST", "/auth/api-keys", 201, json={"name": "serving-bench", "role": "data_scientist"})
        self.headers = {"Content-Type": "application/json", "X-API-Key": key["key"]}
        return seconds

    def upload(self, artifact: bytes, filename: str = "model.skops") -> int:
        """A new version of the model from the artifact's bytes (skops unless `filename` says otherwise); its number."""
        files = {"artifact": (filename, io.BytesIO(artifact), "application/octet-stream")}
        return self._api("POST", f"/models/{self.model_id}/versions", 201, files=files)["number"]

    def deploy(self, version: int, timeout: float = 120.0, until: tuple[str, ...] = ENDED) -> tuple[dict, float]:
        """Deploy `version` blue-green with example 3's configs; the deployment once its status is one of
        `until` (by default: `live`, or whatever else it ended as) and the seconds from the request to then."""
        began = time.monotonic()
        started = self._api("POST", f"/models/{self.model_id}/deployments", 202, json={**EXAMPLE_3, "version": version})
        while time.monotonic() - began < timeout:
            deployment = self._api("GET", f"/deployments/{started['id']}", 200)
            if deployment["status"] in until:
                return deployment, time.monotonic() - began
            time.sleep(0.05)
        raise RuntimeError(f"deployment {started['id']} did not end within {timeout:.0f} s")

    def with_bearer_token(self) -> LoadTarget:
        """The same endpoint with the admin's bearer token: authentication without a database read."""
        return LoadTarget(self.host, self.port, dict(self.stack.headers), self.pid)

    def straight_to_serving(self) -> LoadTarget:
        """Serving's own port, past nginx."""
        from launch import catalog

        return LoadTarget(self.host, catalog.service("serving").port, self.headers, self.pid)

    def predict_request(self, rows: list[list[float]]) -> Request:
        body = {"instances": [dict(zip(self.features, row)) for row in rows]}
        return "POST", f"/api/v1/endpoints/{ENDPOINT}/predict", json.dumps(body).encode()

    def serving_master(self) -> int:
        """The serving service's gunicorn master (its workers are its children)."""
        for pid in tree_pids(self.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if SERVING_APP.encode() in argv and b"gunicorn" in argv:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if SERVING_APP.encode() not in Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0"):
                    return pid
        raise RuntimeError("no serving gunicorn in the stack's process tree")

    def serving_memory(self) -> dict:
        return memory(self.serving_master())

    def stored_predictions(self) -> int:
        with psycopg.connect(self.stack.database_url) as conn:
            return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]

    def replica_start_to_first_prediction(self, timeout: float = 120.0) -> float:
        """Start one more serving gunicorn, as the stack starts its own, on a port of its own: the seconds
        until it answers a prediction (it learns the desired state, loads the model, predicts)."""
        from launch import catalog
        from launch.processes import Supervisor
        from launch.stack import STACK_DEFAULTS
        from shared.config import stored_secrets

        env = self.stack.environment()
        var_dir = env["MODELYARD_VAR_DIR"]
        supervisor = Supervisor(env={**STACK_DEFAULTS, **env, **stored_secrets(var_dir)})
        spec = catalog.service("serving")
        port = free_port()
        probe = LoadTarget(self.host, port, self.headers, self.pid)
        request = self.predict_request([self.probe_row])
        began = time.monotonic()
        supervisor.web("serving-probe", [f"{self.host}:{port}"], SERVING_APP, workers=spec.web.workers,
                       threads=spec.web.threads, var_dir=var_dir)
        try:
            while time.monotonic() - began < timeout:
                if fetch(probe, request)[0] == 200:
                    return time.monotonic() - began
                time.sleep(0.05)
            raise RuntimeError(f"a new serving process did not answer a prediction within {timeout:.0f} s")
        finally:
            supervisor.shutdown()

    def stop(self) -> None:
        self.stack.stop()


def steps(deployment: dict) -> list[str]:
    """The rollout's transitions as "<status> +<seconds since the request>", to see where its time went."""
    times = [(t["to_status"], datetime.fromisoformat(t["at"])) for t in deployment["transitions"]]
    return [f"{status} +{(at - times[0][1]).total_seconds():.2f}" for status, at in times]


def _switch_client(address: tuple[str, int], headers: dict, raw: list[bytes], stop, results) -> None:
    """Predict without pause until `stop`; every answer's time, status and the version it names."""
    conn = Connection(address, headers)
    answers: list[tuple[float, int, int | None]] = []
    first_error = None
    index = 0
    while not stop.is_set():
        try:
            status, body = conn.exchange(raw[index % len(raw)])
        except (OSError, ValueError) as exc:
            answers.append((time.monotonic(), 0, None))
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            conn.close()
            continue
        try:
            version = json.loads(body).get("model_version") if status == 200 else None
        except ValueError:
            version = None
        if status != 200:
            first_error = first_error or f"{status} {body[:300]!r}"
        answers.append((time.monotonic(), status, version))
        index += 1
    conn.close()
    results.put({"answers": answers, "first_error": first_error})


@contextlib.contextmanager
def _predicting(serving: ModelyardServing, requests_to_send: list[Request], clients: int):
    """`clients` processes predicting without pause while the block runs (after a second of warm-up);
    their outcomes fill the yielded list once it ends."""
    context = mp.get_context("fork")
    stop, results = context.Event(), context.Queue()
    encoder = Connection((serving.host, serving.port), serving.headers)
    raw = [encoder.encode(request) for request in requests_to_send]
    workers = [context.Process(target=_switch_client, args=((serving.host, serving.port), serving.headers,
                                                              raw[i::clients], stop, results))
               for i in range(clients)]
    for worker in workers:
        worker.start()
    outcomes: list[dict] = []
    try:
        time.sleep(1.0)
        yield outcomes
    finally:
        stop.set()
        outcomes += [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join()


def switch_under_load(serving: ModelyardServing, version: int, requests_to_send: list[Request],
                      clients: int = 4) -> dict:
    """Deploy `version` while `clients` predict without pause; count what failed, and check that every
    answer names its version and each client meets the versions in order, never back and forth."""
    with _predicting(serving, requests_to_send, clients) as outcomes:
        deployment, seconds = serving.deploy(version)
        time.sleep(2.0)  # answers after live, too
    answers = [answer for outcome in outcomes for answer in outcome["answers"]]
    back_and_forth = sum(any(later[2] is not None and earlier[2] is not None and later[2] < earlier[2]
                             for earlier, later in zip(outcome["answers"], outcome["answers"][1:]))
                         for outcome in outcomes)
    return {
        "clients": clients,
        "deployment_status": deployment["status"],
        "deploy_to_live_seconds": round(seconds, 2),
        "steps": steps(deployment),
        "requests": len(answers),
        "failed": sum(1 for _, status, _ in answers if status != 200),
        "first_error": next((o["first_error"] for o in outcomes if o["first_error"]), None),
        "without_version": sum(1 for _, status, version in answers if status == 200 and version is None),
        "clients_back_and_forth": back_and_forth,
        "answers_by_version": {str(v): sum(1 for _, s, ver in answers if s == 200 and ver == v)
                               for v in sorted({ver for _, _, ver in answers if ver is not None})},
    }


def rollback_under_load(serving: ModelyardServing, version: int, requests_to_send: list[Request],
                        clients: int = 4, timeout: float = 120.0) -> dict:
    """Deploy `version`, which fails real traffic, while `clients` predict without pause; how long from
    its first failed answer until the endpoint answers from the previous version again, and until the
    deployment says rolled_back."""
    with _predicting(serving, requests_to_send, clients) as outcomes:
        began = time.monotonic()
        # Live first, then rolled back once the observation window sees its errors.
        deployment, _ = serving.deploy(version, timeout=timeout, until=("failed", "rolled_back", "superseded"))
        ended = time.monotonic()
        time.sleep(2.0)  # the previous version's answers after the rollback
    answers = sorted(answer for outcome in outcomes for answer in outcome["answers"])
    failures = [at for at, status, _ in answers if status != 200]
    first_failure = failures[0] if failures else None
    recovered = next((at for at, status, answered in answers
                      if first_failure is not None and at > failures[-1] and status == 200 and answered != version),
                     None)
    transitions = {t["to_status"]: datetime.fromisoformat(t["at"]) for t in deployment["transitions"]}
    breach = next((t["reason"] for t in deployment["transitions"] if t["to_status"] == "rolled_back"), None)
    return {
        "clients": clients,
        "deployment_status": deployment["status"],
        "steps": steps(deployment),
        "reason": breach,
        "requests": len(answers),
        "failed": len(failures),
        # On the clients' clock: the first failed answer, to the first answer after the last failure.
        "first_failure_to_recovered_seconds": round(recovered - first_failure, 2) if recovered else None,
        # On the control plane's: the candidate taking traffic, to rolled_back.
        "live_to_rolled_back_seconds": round((transitions["rolled_back"] - transitions["live"]).total_seconds(), 2)
        if {"live", "rolled_back"} <= transitions.keys() else None,
        "request_to_rolled_back_seconds": round(ended - began, 2),
    }
