"""`make run`: the whole platform on one machine with no external server.

SQLite under var/, artifacts under var/artifacts, the in-process cache, events from the outbox to local
subscribers, and a Celery worker (with beat) on kombu's SQLAlchemy transport. Same code paths as the
distributed stack; only the URLs differ.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from launch.processes import UNIX_PATH_MAX, Supervisor, local_secrets, run_preparation
from shared.config import load_settings


def main() -> int:
    os.environ.update(local_secrets(load_settings()))
    settings = load_settings()
    login = run_preparation()

    bind = settings.bind
    supervisor = Supervisor(env=dict(os.environ))
    # Predictions in a process of their own, so that they never hold the web process's interpreter lock;
    # the web process forwards them (launch/forward.py). Replicas read the desired state from the web
    # process; with no broker to announce switches, they poll it often.
    serving_socket = str(Path(settings.var_dir).resolve() / "serving.sock")
    if len(serving_socket) >= UNIX_PATH_MAX:
        serving_socket = str(Path(tempfile.mkdtemp(prefix="modelyard-")) / "serving.sock")
    # One Prometheus view for both servers: the web process's /metrics, the only one a user can reach, shows
    # the serving process's figures (its latencies, its prediction log's and shadow mirror's drops) too.
    supervisor.web("serving", [f"unix:{serving_socket}"], "launch.apps:service_app('serving')",
                   var_dir=settings.var_dir, workers=1, threads=4, metrics="web",
                   env={"MODELYARD_DEPLOYMENT_URL": f"http://{bind}",
                        "MODELYARD_REPLICA_POLL_SECONDS": os.environ.get("MODELYARD_REPLICA_POLL_SECONDS", "0.5"),
                        "MODELYARD_SWITCH_AHEAD_SECONDS": os.environ.get("MODELYARD_SWITCH_AHEAD_SECONDS", "1.5")})
    # Threads, not greenlets: SQLite cannot yield to gevent's loop, so one request waiting out another's
    # write lock would stall the whole worker, and the worker's relay and sealer threads with it.
    supervisor.web("web", [bind], f"launch.apps:run_app({serving_socket!r})", var_dir=settings.var_dir,
                   workers=1, threads=8, config="python:launch.run_web")
    supervisor.python(
        "worker", "-m", "celery", "-A", "workers.celery_app", "worker", "--beat", "--loglevel", "WARNING",
        "--concurrency", "2", "--schedule", str(Path(settings.var_dir) / "celerybeat-schedule"),
    )

    print(f"Modelyard is listening on http://{bind}  (API under /api/v1, OpenAPI at /api/v1/openapi.json)", flush=True)
    print(login, flush=True)
    return supervisor.wait()


if __name__ == "__main__":
    sys.exit(main())
