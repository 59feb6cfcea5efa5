"""Modelyard's `make stack` as the benchmark drives it: start it, seed it, shape its requests, stop it.

The stack runs as `python -m launch.stack` on its own Postgres database (recreated each run),
its own var dir, cache prefix and events exchange, so a benchmark never touches anyone's data. The
100,000 models are COPYed straight into the registry's `models` table; the measured creates then go
through the API like any client's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import redis

from bench.load import Request, fetch, start_time, tree_pids

REPO = Path(__file__).resolve().parent.parent
TYPES = ("classification", "regression", "clustering", "anomaly_detection", "forecasting", "ranking")
FRAMEWORKS = ("scikit_learn", "xgboost", "lightgbm", "pytorch", "tensorflow", "onnx", "custom")


class ModelyardStack:
    """`python -m launch.stack` on a fresh database, driven through the gateway."""

    create_status = 201

    def __init__(self, *, postgres: str, database: str, port: int, work_dir: Path, web_workers: int | None,
                 env: dict[str, str] | None = None):
        self.admin_url = f"{postgres}/postgres"
        self.database_url = f"{postgres}/{database}"
        self.database = database
        self.host, self.port = "127.0.0.1", port
        self.work_dir = work_dir
        self.web_workers = web_workers
        self.env = env or {}
        self.cache_prefix = f"bench-{os.getpid()}:"
        self.password = secrets.token_urlsafe(16)
        self.headers = {"Content-Type": "application/json"}
        self.process: subprocess.Popen | None = None
        self.log_path = work_dir / "stack.log"
        self.started_pids: dict[int, int | None] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "MODELYARD_DATABASE_URL": "postgresql+psycopg://" + self.database_url.split("://", 1)[1],
            "MODELYARD_VAR_DIR": str(self.work_dir / "var"),
            "MODELYARD_ADMIN_PASSWORD": self.password,
            "MODELYARD_CACHE_PREFIX": self.cache_prefix,
            "MODELYARD_GATEWAY_PORT": str(self.port),
            # Its own exchange, so the benchmark's events never reach queues bound by anyone else's stack.
            "MODELYARD_EVENTS_EXCHANGE": "modelyard.bench.events",
            # Its own Celery queues too: another stack's worker on this broker must not take its tasks.
            "MODELYARD_TASK_QUEUE_PREFIX": "bench.",
        })
        if self.web_workers:
            env["MODELYARD_REGISTRY_WORKERS"] = str(self.web_workers)
        return {**env, **self.env}

    def start(self, timeout: float = 120.0) -> None:
        """Recreate the database, start the stack, log in as the admin."""
        # A stack already running would answer in place of ours. (A service port that is taken makes ours exit.)
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:
                raise RuntimeError(f"port {self.port} is taken: stop the stack that is running before benchmarking")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
        log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "launch.stack"], cwd=REPO,
                                        env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        body = json.dumps({"username": "admin", "password": self.password}).encode()
        answer = (0, b"")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited with {self.process.returncode}; see {self.log_path}")
            answer = fetch(self, ("POST", "/api/v1/auth/token", body))
            if answer[0] == 200:
                self.headers["Authorization"] = f"Bearer {json.loads(answer[1])['access_token']}"
                answer = fetch(self, ("GET", "/api/v1/models?limit=1", None))
                if answer[0] == 200:
                    self.started_pids = {pid: start_time(pid) for pid in tree_pids(self.pid)}
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the stack did not let the admin log in and list models within {timeout:.0f} s "
                           f"(last answer {answer[0]} {answer[1][:200]!r}); see {self.log_path}")

    def seed(self, rows: list[tuple[str, str]]) -> None:
        """COPY the rows straight into the registry's `models` table, then ANALYZE it."""
        now = datetime.now(timezone.utc)
        columns = ("id, name, description, type, framework, status, hyperparameters, features, tags, metadata, "
                   "created_by, created_at, updated_at")
        with psycopg.connect(self.database_url) as conn:
            with conn.cursor().copy(f"COPY models ({columns}) FROM STDIN") as copy:
                for i, (name, description) in enumerate(rows):
                    stamp = now - timedelta(seconds=len(rows) - i)
                    copy.write_row((uuid.uuid4(), name, description, TYPES[i % len(TYPES)],
                                    FRAMEWORKS[i % len(FRAMEWORKS)], "registered", "{}", "[]",
                                    '{"team": "bench"}', "{}", "admin", stamp, stamp))
            conn.execute("ANALYZE models")

    def sample_keys(self, count: int) -> list[str]:
        with psycopg.connect(self.database_url) as conn:
            return [str(model_id) for (model_id,) in conn.execute(
                "SELECT id FROM models WHERE name LIKE 'seed-%%' ORDER BY random() LIMIT %s", (count,))]

    def create_request(self, name: str, description: str) -> Request:
        body = {"name": name, "type": "classification", "framework": "scikit_learn", "description": description,
                "tags": {"team": "bench"}}
        return "POST", "/api/v1/models", json.dumps(body).encode()

    def get_request(self, key: str) -> Request:
        return "GET", f"/api/v1/models/{key}", None

    def search_request(self, q: str) -> Request:
        return "GET", "/api/v1/models?" + urlencode({"q": q, "limit": 50}), None

    def items(self, payload: bytes) -> int:
        return len(json.loads(payload)["items"])

    def stop(self) -> None:
        """SIGTERM the stack (it stops its children); SIGKILL whatever of what it started still lingers."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for pid, started in self.started_pids.items():
            # Only a process that is still the one we started: a pid may have been reused since.
            if start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)
        self.forget_cache()

    def forget_cache(self) -> None:
        client = redis.Redis.from_url(os.environ.get("MODELYARD_REDIS_URL", "redis://127.0.0.1:6379/0"))
        keys = list(client.scan_iter(match=self.cache_prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
