"""Start the platform's processes, stop them together: what `make run` and `make stack` share.

The supervisor lives as long as the platform, so this module and its callers import only the
standard library, shared.config and the manifests (which name code and import none): the database
work runs in a child (launch.prepare), and so does building the API document (launch.openapi).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from pathlib import Path

from shared.config import SECRETS_FILE, Settings, stored_secrets

UNIX_PATH_MAX = 108  # sun_path on Linux, with its terminating NUL


def local_secrets(settings: Settings) -> dict[str, str]:
    """Secrets for a development machine, made once and kept in var/secrets.json (mode 600).

    Artifacts are encrypted with this key: losing the file loses the artifacts, so a value in it is never
    changed; a secret it lacks is added. Settings from the environment win.
    """
    stored = stored_secrets(settings.var_dir)
    generated = {
        "MODELYARD_JWT_SECRET": lambda: secrets.token_urlsafe(48),
        "MODELYARD_ARTIFACT_KEYS": lambda: "local1:" + urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "MODELYARD_FEATURE_HASH_KEY": lambda: secrets.token_urlsafe(32),
    }
    # A var dir made before a secret existed gets that one added; the ones it holds stay as they are.
    missing = {name: make() for name, make in generated.items() if name not in stored}
    if missing:
        path = Path(settings.var_dir) / SECRETS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        written = path.with_name(SECRETS_FILE + ".new")
        fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({**stored, **missing}, handle)
        os.replace(written, path)  # whole or not at all: the artifacts' key is in it
        stored = {**stored, **missing}
    return {name: value for name, value in stored.items() if not os.environ.get(name)}


def run_preparation(*options: str) -> str:
    """Run launch.prepare (directories, migrations, first admin) and return its login line.

    Its errors reach stderr as they are; a failure stops the start-up with the child's exit code.
    """
    done = subprocess.run([sys.executable, "-m", "launch.prepare", *options], stdout=subprocess.PIPE,
                          text=True)
    if done.returncode:
        raise SystemExit(done.returncode)
    return done.stdout.strip()


def _worker_class(threads: int | None) -> tuple[str, ...]:
    """gunicorn's worker class for shared.service_spec.WebProcess.threads."""
    if threads is None:
        return ("--worker-class", "gevent")
    if threads == 0:
        return ("--worker-class", "sync")
    return ("--worker-class", "gthread", "--threads", str(threads))


class Supervisor:
    """Children in their own process groups; when one exits or a signal arrives, all stop."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = False
        self._metrics_dirs: set[Path] = set()

    def start(self, name: str, argv: list[str], **env: str) -> None:
        self.children[name] = subprocess.Popen(argv, env={**self.env, **env}, start_new_session=True)

    def web(self, name: str, binds: list[str], app: str, *, var_dir: str, workers: int = 1,
            threads: int | None = None, config: str | None = None, env: dict[str, str] | None = None,
            metrics: str | None = None) -> None:
        """A gunicorn server whose workers share one Prometheus view (multiprocess mode).

        Each worker serves its requests on gevent's greenlets, or, given `threads`, on that many threads
        (0: gunicorn's sync worker, one request at a time);
        `env` adds to (or overrides) the supervisor's environment for this server alone; `metrics` names
        the view it shares (default: its own, by `name`), so that another server's /metrics shows it too.
        """
        metrics_dir = Path(var_dir) / "prometheus" / (metrics or name)
        if metrics_dir not in self._metrics_dirs:  # emptied once: a server sharing it may have written already
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            self._metrics_dirs.add(metrics_dir)
        # No --preload: each worker imports the app itself and the master holds only gunicorn (~25 MiB
        # instead of a full copy of the app: resident memory counts shared pages in every process).
        # Each worker's Prometheus values then live in its own files from the start.
        argv = [
            sys.executable, "-m", "gunicorn", *(arg for bind in binds for arg in ("--bind", bind)),
            "--workers", str(workers), "--log-level", "warning",
            # A greenlet keeps its keep-alive connection and waits on Postgres through gevent's loop;
            # gthread hands every request between threads and its poller: gevent took 14% less CPU
            # per model create. The worker patches the standard library before it imports the app,
            # and psycopg then waits cooperatively by itself.
            *_worker_class(threads),
            # Workers touch their heartbeat file on every loop of their event loop: on a disk-backed
            # /tmp that cost ~5% of a model create. (gunicorn's own advice for containers.)
            *(("--worker-tmp-dir", "/dev/shm") if Path("/dev/shm").is_dir() else ()),
        ]
        # Server hooks (launch/gunicorn_hooks.py by default); the command line's settings win over its.
        argv += ["--config", config or "python:launch.gunicorn_hooks"]
        argv.append(app)
        self.start(name, argv, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **(env or {}))

    def python(self, name: str, *args: str) -> None:
        self.start(name, [sys.executable, *args])

    def _stop(self, *_):
        self.stopping = True

    def wait(self, on_tick=None) -> int:
        """Block until a signal or a child's death, then stop everything; returns the exit code."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        code = 0
        while not self.stopping:
            for name, child in self.children.items():
                if child.poll() is not None:
                    print(f"modelyard: {name} exited with {child.returncode}; stopping", file=sys.stderr, flush=True)
                    code = child.returncode or 1
                    self.stopping = True
            if on_tick is not None and not self.stopping:
                on_tick()
            time.sleep(0.2)
        self.shutdown()
        return code

    def shutdown(self, grace: float = 10.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
