"""Monitoring's ingestion figures (issue 13), beside MLflow's log_batch measured in the same run.

Modelyard is `make stack` on a throwaway database (bench/modelyard_driver.py), a model with one skops
version of 20 features, and a data_scientist API key. Through the gateway:
  - single: one client, one record a request (`POST /api/v1/monitoring/predictions`): p50, p99;
  - batch: `--clients` (8) clients, 1,000 records a request: records stored per second (the API answers
    202 once they are stored, so this is the store's rate), p50/p99 of a request;
  - queue: `--queue-batches` batches of 500 records (serving's batch size) sent to the stack's `ingest`
    queue as serving sends them, from the first sent to the last row stored (the stack's ingest worker).
MLflow (its own venv, `--mlflow-venv`; skipped with a message if absent): `POST runs/log-batch` of 1,000
metrics a request (its maximum) from the same number of clients, each on a run of its own: metrics/s.
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
import requests

from bench.load import run_phase, split
from bench.mlflow_driver import MLflowServer
from bench.modelyard_driver import ModelyardStack

FEATURES = [f"x{i}" for i in range(20)]
BATCH_RECORDS = 1_000
QUEUE_BATCH = 500  # serving's prediction log sends batches of this size
WARM_UP = 20  # requests per client, unmeasured


def _version_artifact() -> bytes:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(200, len(FEATURES)))
    return skops.io.dumps(LogisticRegression().fit(rows, (rows[:, 0] > 0).astype(int)))


def _records(model_id: str, prefix: str, count: int, rng: np.random.Generator) -> list[dict]:
    now = datetime.now(timezone.utc)
    values = rng.normal(size=(count, len(FEATURES))).round(6).tolist()
    return [{"model_id": model_id, "version": 1, "request_id": f"{prefix}-{n}", "prediction": n % 2,
             "probabilities": {"0": 0.4, "1": 0.6}, "latency_ms": 3.5,
             "timestamp": (now - timedelta(milliseconds=n)).isoformat(), "features": dict(zip(FEATURES, row))}
            for n, row in enumerate(values)]


def _stored(stack: ModelyardStack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def measure_modelyard(stack: ModelyardStack, *, singles: int, batches: int, clients: int, queue_batches: int) -> dict:
    stack.start()
    admin = {"Authorization": stack.headers["Authorization"]}
    base = f"http://{stack.host}:{stack.port}/api/v1"
    model = requests.post(f"{base}/models", headers=admin, timeout=60, json={
        "name": "ingest-bench", "type": "classification", "framework": "scikit_learn", "features": FEATURES}).json()
    answer = requests.post(f"{base}/models/{model['id']}/versions", headers=admin, timeout=60,
                           files={"artifact": ("model.skops", io.BytesIO(_version_artifact()))})
    answer.raise_for_status()
    key = requests.post(f"{base}/auth/api-keys", headers=admin, timeout=60,
                        json={"name": "ingest-bench", "role": "data_scientist"}).json()["key"]
    stack.headers = {"Content-Type": "application/json", "X-API-Key": key}
    path, rng = "/api/v1/monitoring/predictions", np.random.default_rng(1)

    def body(records) -> bytes:
        return json.dumps(records[0] if len(records) == 1 else {"records": records}).encode()

    warm = [("POST", path, body(_records(model["id"], f"w{n}", 1, rng))) for n in range(WARM_UP * clients)]
    run_phase(stack, split(warm, clients), expect=202)
    single = [("POST", path, body(_records(model["id"], f"s{n}", 1, rng))) for n in range(singles)]
    figures = {"single_1": run_phase(stack, [single], expect=202)}
    batch = [("POST", path, body(_records(model["id"], f"b{n}", BATCH_RECORDS, rng))) for n in range(batches)]
    figures["batch"] = run_phase(stack, split(batch, clients), expect=202)
    figures["batch"]["records_per_second"] = round(figures["batch"]["per_second"] * BATCH_RECORDS)
    figures["queue"] = _through_the_queue(stack, model["id"], queue_batches, rng)
    figures["stored"] = _stored(stack)
    figures["expected"] = WARM_UP * clients + singles + batches * BATCH_RECORDS + queue_batches * QUEUE_BATCH
    return figures


def _through_the_queue(stack: ModelyardStack, model_id: str, count: int, rng: np.random.Generator) -> dict:
    """Batches sent to the stack's ingest queue as serving's prediction log sends them (plain-json)."""
    from launch.stack import STACK_DEFAULTS
    from shared.config import load_settings, stored_secrets
    from shared.prediction_records import QUEUE, STORE_PREDICTIONS, prediction_record
    from shared.tasks import PLAIN_JSON, task_sender

    env = {**STACK_DEFAULTS, **stack.environment()}
    settings = load_settings(environ={**env, **{f"MODELYARD_{k.upper()}": v
                                                 for k, v in stored_secrets(env["MODELYARD_VAR_DIR"]).items()}})
    sender, queue = task_sender(settings), settings.task_queue(QUEUE)
    now = datetime.now(timezone.utc)
    batches = [[prediction_record(model_id=model_id, version=1, request_id=f"q{b}-{n}", prediction=n % 2,
                                  probabilities={"0": 0.4, "1": 0.6}, latency_ms=3.5,
                                  features=dict(zip(FEATURES, row)), predicted_at=now - timedelta(milliseconds=n))
                for n, row in enumerate(rng.normal(size=(QUEUE_BATCH, len(FEATURES))).round(6).tolist())]
               for b in range(count)]
    before = _stored(stack)
    began = time.monotonic()
    for records in batches:
        sender.send_task(STORE_PREDICTIONS, args=[records], queue=queue, serializer=PLAIN_JSON)
    sent = time.monotonic() - began
    target = before + count * QUEUE_BATCH
    while _stored(stack) < target and time.monotonic() - began < 600:
        time.sleep(0.2)
    seconds = time.monotonic() - began
    stored = _stored(stack) - before
    return {"batches": count, "records": count * QUEUE_BATCH, "stored": stored, "send_seconds": round(sent, 2),
            "seconds": round(seconds, 2), "records_per_second": round(stored / seconds)}


def measure_mlflow(server: MLflowServer, *, batches: int, clients: int) -> dict:
    server.start()
    base = f"http://{server.host}:{server.port}/api/2.0/mlflow"
    experiment = requests.post(f"{base}/experiments/create", json={"name": "log-batch-bench"}, timeout=60).json()
    runs = [requests.post(f"{base}/runs/create", json={"experiment_id": experiment["experiment_id"]},
                          timeout=60).json()["run"]["info"]["run_id"] for _ in range(clients)]
    stamp = int(time.time() * 1000)

    def request(run: str, step: int) -> tuple[str, str, bytes]:
        metrics = [{"key": f"m{n % 50}", "value": float(n), "timestamp": stamp, "step": step * BATCH_RECORDS + n}
                   for n in range(BATCH_RECORDS)]
        return "POST", "/api/2.0/mlflow/runs/log-batch", json.dumps({"run_id": run, "metrics": metrics}).encode()

    run_phase(server, [[request(run, -1 - n) for n in range(2)] for run in runs])  # warm up
    per_client = max(1, batches // clients)
    figures = run_phase(server, [[request(run, n) for n in range(per_client)] for run in runs])
    figures["metrics_per_second"] = round(figures["per_second"] * BATCH_RECORDS)
    figures["version"] = server.version()
    return figures


def run(*, postgres: str, port: int, mlflow_port: int, mlflow_venv: Path, work_dir: Path, singles: int,
        batches: int, clients: int, queue_batches: int) -> dict:
    figures: dict = {}
    stack = ModelyardStack(postgres=postgres, database="modelyard_ingest_bench", port=port, work_dir=work_dir,
                           web_workers=None)
    try:
        figures["modelyard"] = measure_modelyard(stack, singles=singles, batches=batches, clients=clients,
                                                 queue_batches=queue_batches)
    finally:
        stack.stop()
    if not (mlflow_venv / "bin" / "mlflow").exists():
        figures["mlflow"] = {"skipped": f"no MLflow venv at {mlflow_venv} (see bench/README.md)"}
        return figures
    server = MLflowServer(venv=mlflow_venv, postgres=postgres, database="mlflow_ingest_bench", port=mlflow_port,
                          work_dir=work_dir)
    try:
        figures["mlflow"] = measure_mlflow(server, batches=batches, clients=clients)
    finally:
        server.stop()
    return figures


def report(figures: dict) -> list[str]:
    ours, peer = figures["modelyard"], figures["mlflow"]
    lines = [
        f"single record, 1 client: p50 {ours['single_1']['p50_ms']} ms, p99 {ours['single_1']['p99_ms']} ms "
        f"({ours['single_1']['per_second']} req/s; target p99 < 10 ms)",
        f"batch API, {ours['batch']['clients']} clients x 1,000 records: {ours['batch']['records_per_second']:,} "
        f"records/s (request p50 {ours['batch']['p50_ms']} ms, p99 {ours['batch']['p99_ms']} ms; errors "
        f"{ours['batch']['errors']}; server {ours['batch']['server_cpu']} cores, machine {ours['batch']['machine_cpu']})",
        f"ingest queue, {ours['queue']['batches']} x {QUEUE_BATCH}: {ours['queue']['records_per_second']:,} records/s "
        f"({ours['queue']['stored']:,} stored in {ours['queue']['seconds']} s)",
        f"stored in all: {ours['stored']:,} of {ours['expected']:,} sent",
    ]
    if "skipped" in peer:
        lines.append(f"MLflow log_batch: skipped ({peer['skipped']})")
    else:
        lines.append(f"MLflow {peer['version']} log_batch, {peer['clients']} clients x 1,000 metrics: "
                     f"{peer['metrics_per_second']:,} metrics/s (p99 {peer['p99_ms']} ms; errors {peer['errors']})")
        lines.append(f"batch API / MLflow log_batch: "
                     f"{ours['batch']['records_per_second'] / max(peer['metrics_per_second'], 1):.1f}x")
    return lines
