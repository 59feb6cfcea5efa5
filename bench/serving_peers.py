"""The serving benchmark's model and its two points of comparison: a plain Flask app and MLServer.

The model is a GradientBoostingClassifier (300 trees) fitted on scikit-learn's breast_cancer, as a
numpy array, so no server pays for a pandas frame the others skip. Every server answers the same rows:
Modelyard and the plain Flask app take `{"instances": [{feature: value}]}`, MLServer a V2 tensor.

- **Plain Flask**: `plain_app()` below, under gunicorn with 2 sync workers: it loads the model and
  predicts, nothing else (no authentication, validation or logging).
- **MLServer 1.7** with its scikit-learn runtime, from its own virtualenv (never a project dependency),
  made by `ensure_mlserver_venv` when missing; it needs `uvloop<0.22`. It is asked for `predict_proba`
  only: Modelyard answers labels and probabilities from one pass, and asking MLServer for both would
  run the model twice.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.load import Request, fetch

REPO = Path(__file__).resolve().parent.parent
TREES = 300
MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22")
MODEL_ENV = "MODELYARD_BENCH_MODEL"


def dataset() -> tuple[list[str], list[list[float]], Any]:
    """breast_cancer's 30 column names, its rows as plain floats, and its target."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return [str(name) for name in data.feature_names], data.data.tolist(), data.target


def train(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    _, rows, target = dataset()
    return GradientBoostingClassifier(n_estimators=TREES, random_state=seed).fit(rows, target)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def plain_app():
    """The plain Flask app gunicorn serves: load the model named by MODELYARD_BENCH_MODEL, predict."""
    import joblib
    import numpy as np
    from flask import Flask, request

    model = joblib.load(os.environ[MODEL_ENV])
    features, _, _ = dataset()
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        rows = np.array([[row[name] for name in features] for row in request.get_json()["instances"]], dtype=float)
        probabilities = model.predict_proba(rows)
        return {"predictions": model.classes_[probabilities.argmax(axis=1)].tolist(),
                "probabilities": [dict(zip(("0", "1"), row)) for row in probabilities.tolist()]}

    return app


class Server:
    """A server process started by the benchmark, driven through HTTP; `ready` is its first prediction."""

    name = ""

    def __init__(self, *, work_dir: Path, rows: list[list[float]], features: list[str]):
        self.host, self.port = "127.0.0.1", free_port()
        self.work_dir, self.features, self.probe_row = work_dir, features, rows[0]
        self.headers = {"Content-Type": "application/json"}
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def predict_request(self, rows: list[list[float]]) -> Request:
        raise NotImplementedError

    def start(self, timeout: float = 120.0) -> float:
        """Start the server; the seconds from its start to its first answered prediction."""
        argv, env = self.command()
        log = (self.work_dir / f"{self.name}.log").open("wb")
        began = time.monotonic()
        self.process = subprocess.Popen(argv, env={**os.environ, **env}, cwd=self.work_dir, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        probe = self.predict_request([self.probe_row])
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {log.name}")
            if fetch(self, probe)[0] == 200:
                return time.monotonic() - began
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer a prediction within {timeout:.0f} s; see {log.name}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class PlainFlask(Server):
    name = "plain Flask"

    def __init__(self, *, model_path: Path, **kwargs):
        super().__init__(**kwargs)
        self.model_path = model_path

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ([sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"{self.host}:{self.port}",
                 "--log-level", "warning", "bench.serving_peers:plain_app()"],
                {MODEL_ENV: str(self.model_path), "PYTHONPATH": str(REPO)})

    def predict_request(self, rows: list[list[float]]) -> Request:
        body = {"instances": [dict(zip(self.features, row)) for row in rows]}
        return "POST", "/predict", json.dumps(body).encode()


class MLServer(Server):
    def __init__(self, *, venv: Path, model_path: Path, parallel_workers: int, **kwargs):
        super().__init__(**kwargs)
        self.venv, self.model_path, self.parallel_workers = venv, model_path, parallel_workers
        self.name = f"MLServer parallel_workers={parallel_workers}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        folder = self.work_dir / f"mlserver-{self.parallel_workers}"
        folder.mkdir(exist_ok=True)
        (folder / "settings.json").write_text(json.dumps({
            "http_port": self.port, "grpc_port": free_port(), "metrics_port": free_port(),
            "parallel_workers": self.parallel_workers, "debug": False}))
        (folder / "model-settings.json").write_text(json.dumps({
            "name": "gbc", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(self.model_path), "version": "v1"}}))
        return [str(self.venv / "bin" / "mlserver"), "start", str(folder)], {}

    def predict_request(self, rows: list[list[float]]) -> Request:
        body = {"inputs": [{"name": "input-0", "shape": [len(rows), len(self.features)], "datatype": "FP64",
                            "data": [value for row in rows for value in row]}],
                "outputs": [{"name": "predict_proba"}]}
        return "POST", "/v2/models/gbc/infer", json.dumps(body).encode()


def ensure_mlserver_venv(venv: Path) -> str | None:
    """Make MLServer's virtualenv if it is missing, with the project's scikit-learn (so that both load
    the same joblib file); None when it is ready, else why not."""
    if (venv / "bin" / "mlserver").exists():
        return None
    import sklearn

    print(f"Installing MLServer into {venv} (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *MLSERVER_PACKAGES,
                        f"scikit-learn=={sklearn.__version__}"], check=True)
    except subprocess.CalledProcessError as exc:
        return f"installing MLServer into {venv} failed: {exc}"
    return None
