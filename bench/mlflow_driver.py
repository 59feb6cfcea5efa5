"""MLflow's tracking server as the benchmark's point of comparison: start it, seed it, shape its requests.

MLflow runs from its own virtualenv (never a project dependency) with `--workers 1`: its default
multi-worker mode adds a delay to every call that would flatter Modelyard. Its registry lives in a fresh
Postgres database on the same server as ours, seeded by COPY straight into `registered_models`, as
Modelyard's `models` table is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import psycopg

from bench.load import Request, fetch

API = "/api/2.0/mlflow/registered-models"


class MLflowServer:
    """`mlflow server` on a fresh database, driven through its REST API."""

    create_status = 200

    def __init__(self, *, venv: Path, postgres: str, database: str, port: int, work_dir: Path):
        self.venv = venv
        self.admin_url = f"{postgres}/postgres"
        self.database_url = f"{postgres}/{database}"
        self.database = database
        self.host, self.port = "127.0.0.1", port
        self.work_dir = work_dir
        self.headers = {"Content-Type": "application/json"}
        self.process: subprocess.Popen | None = None
        self.log_path = work_dir / "mlflow.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    def version(self) -> str:
        result = subprocess.run([str(self.venv / "bin" / "python"), "-c", "import mlflow; print(mlflow.__version__)"],
                                capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def start(self, timeout: float = 180.0) -> None:
        """Recreate the database, start the server and wait until it answers /health."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        # MLflow's own SQLAlchemy reads a bare postgresql:// as psycopg 3, which its venv lacks: name psycopg2.
        store = "postgresql+psycopg2://" + self.database_url.split("://", 1)[1]
        argv = [str(self.venv / "bin" / "mlflow"), "server", "--workers", "1", "--host", self.host,
                "--port", str(self.port), "--backend-store-uri", store,
                "--default-artifact-root", str(self.work_dir / "mlflow-artifacts")]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}; see {self.log_path}")
            if fetch(self, ("GET", "/health", None))[0] == 200:
                return
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer within {timeout:.0f} s; see {self.log_path}")

    def seed(self, rows: list[tuple[str, str]]) -> None:
        """COPY (name, description) rows into `registered_models` (the server made the schema at start)."""
        now_ms = int(time.time() * 1000)
        with psycopg.connect(self.database_url) as conn:
            with conn.cursor().copy("COPY registered_models (name, description, creation_time, last_updated_time,"
                                    " workspace) FROM STDIN") as copy:
                for position, (name, description) in enumerate(rows):
                    stamp = now_ms - (len(rows) - position) * 1000
                    copy.write_row((name, description, stamp, stamp, "default"))
            conn.execute("ANALYZE registered_models")

    def sample_keys(self, count: int) -> list[str]:
        """Names of seeded models in random order: MLflow addresses a registered model by name."""
        with psycopg.connect(self.database_url) as conn:
            return [name for (name,) in conn.execute(
                "SELECT name FROM registered_models WHERE name LIKE 'seed-%%' ORDER BY random() LIMIT %s",
                (count,))]

    def create_request(self, name: str, description: str) -> Request:
        body = {"name": name, "description": description, "tags": [{"key": "team", "value": "bench"}]}
        return "POST", f"{API}/create", json.dumps(body).encode()

    def get_request(self, key: str) -> Request:
        return "GET", f"{API}/get?" + urlencode({"name": key}), None

    def search_request(self, q: str) -> Request:
        # MLflow's LIKE is case-sensitive where ours is ILIKE; the seeded names are lower case, so both match alike.
        return "GET", f"{API}/search?" + urlencode({"filter": f"name LIKE '%{q}%'", "max_results": 50}), None

    def items(self, payload: bytes) -> int:
        return len(json.loads(payload).get("registered_models", []))

    def stop(self) -> None:
        """SIGTERM the server's process group; SIGKILL it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
