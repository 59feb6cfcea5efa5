"""Training tests run the real thing: Celery worker processes on RabbitMQ, the outbox relay and the
event consumers of the registry and training, against this run's Postgres database.

`celery_worker` starts `celery worker` as a subprocess on this run's own queue names; `event_pipeline`
runs the relay and the consumers in threads of the test process; `upload_frame` turns one of
scikit-learn's bundled datasets into an uploaded CSV.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
from flask.testing import FlaskClient
from kombu import Connection, Queue

from shared.config import Settings
from shared.db import Database
from shared.events.consumer import EventConsumer
from shared.events.relay import AmqpPublisher, Relay
from shared.events.runner import ConsumerRunner
from launch import catalog
from shared.events.topology import subscriber_queues
from tests.support.settings import platform_settings

ROOT = Path(__file__).resolve().parents[2]
WORKER_READY_SECONDS = 60


def worker_env(settings: dict[str, Any]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MODELYARD_")}
    env.update({f"MODELYARD_{name.upper()}": str(value) for name, value in settings.items()})
    return env


class Worker:
    """A `celery worker` process (prefork) and the pool children it runs tasks in."""

    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process = process
        self.log_path = log_path

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def celery_worker(settings: dict[str, Any], log_path: Path, *, concurrency: int = 2,
                  pools: tuple[str, ...] | None = None) -> Iterator[Worker]:
    """A worker consuming this run's queues of `pools` (default: every queue of the catalog); stopped, and
    its queues deleted, afterwards."""
    prefix = settings["task_queue_prefix"]
    queues = [prefix + pool for pool in pools or catalog.queues()]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--loglevel", "INFO",
             "--concurrency", str(concurrency), "--pool", "prefork", "--queues", ",".join(queues),
             "--without-gossip", "--without-mingle", "--hostname", f"{prefix}worker@%h"],
            cwd=ROOT, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(process, log_path)
    try:
        deadline = time.monotonic() + WORKER_READY_SECONDS
        while " ready." not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start:\n" + worker.log())
            time.sleep(0.1)
        yield worker
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with Connection(settings["broker_url"]) as connection:
            channel = connection.default_channel
            for pool in catalog.queues():
                Queue(prefix + pool).bind(channel).delete()


@contextlib.contextmanager
def event_pipeline(settings: Settings, consumers: Iterable[EventConsumer]) -> Iterator[None]:
    """The outbox relay to RabbitMQ and each consumer on its queue, in threads, until the block ends."""
    consumers = list(consumers)
    db = Database(settings.database_url)
    stop = threading.Event()
    relay = Relay(db, AmqpPublisher(settings.events_url, settings.events_exchange, consumers))
    threads = [threading.Thread(target=relay.run_forever, args=(stop, 0.05), daemon=True)]
    for consumer in consumers:
        runner = ConsumerRunner(db, consumer, settings.events_url, settings.events_exchange,
                                max_retries=2, retry_delay=0.2)
        threads.append(threading.Thread(target=runner.run, args=(stop, 0.2), daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        db.dispose()
        with Connection(settings.events_url) as connection:
            channel = connection.default_channel
            for consumer in consumers:
                for queue in subscriber_queues(settings.events_exchange, consumer):
                    queue.bind(channel).delete()
        db.dispose()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def bundled_frame(name: str) -> tuple[pd.DataFrame, str]:
    """One of scikit-learn's bundled datasets as a frame with a `target` column."""
    from sklearn import datasets

    loaded = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = loaded.frame.copy()
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    return frame, "target"


def churn_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """The brief's churn data: features age, income, usage_frequency, support_calls and target churned,
    with churn likelier for customers who call support often and use the product little."""
    import numpy as np

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows),
        "income": rng.normal(55_000, 15_000, rows).round(2),
        "usage_frequency": rng.integers(0, 30, rows),
        "support_calls": rng.poisson(2, rows),
    })
    odds = 0.6 * frame["support_calls"] - 0.15 * frame["usage_frequency"] + rng.normal(0, 1, rows)
    frame["churned"] = (odds > 0).astype(int)
    return frame


def upload_frame(client: FlaskClient, headers: dict, frame: pd.DataFrame, name: str) -> dict:
    response = client.post("/api/v1/datasets", data={"file": (io.BytesIO(csv_bytes(frame)), f"{name}.csv")},
                           headers=headers, content_type="multipart/form-data")
    assert response.status_code in (200, 201), response.json
    return response.json


def training_settings(database_url: str, servers: dict[str, str], root: Path, run_id: str) -> dict[str, Any]:
    """Settings for a training module: like `settings_overrides`, with directories and queue names that
    outlive one test (the worker process is started once per module)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    return {
        **platform_settings(database_url, servers, root, run_id),
        "task_queue_prefix": f"test.{run_id}.{root.name}.",
        "hpo_parallelism": 2,
    }
