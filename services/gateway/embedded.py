"""`make run`: the whole platform on one machine with no external server.

SQLite under var/, artifacts under var/artifacts, the in-process cache, events from the outbox to local
subscribers, and a Celery worker (with beat) on kombu's SQLAlchemy transport. Same code paths as the
distributed stack; only the URLs differ.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from services.gateway.processes import Supervisor, local_secrets, prepare
from services.registry.handlers import training_outcomes
from services.training.handlers import version_registrations
from shared.config import load_settings
from shared.db import Database
from shared.events.relay import Relay, publisher_from_settings


def main() -> int:
    os.environ.update(local_secrets(load_settings()))
    settings = load_settings()
    login = prepare(settings)

    bind = os.environ.get("MODELYARD_BIND", "127.0.0.1:8000")
    supervisor = Supervisor(env=dict(os.environ))
    supervisor.web("web", bind, "services.gateway.allinone:create_app()", workers=2, threads=4,
                   var_dir=settings.var_dir)
    supervisor.python(
        "worker", "-m", "celery", "-A", "workers.celery_app", "worker", "--beat", "--loglevel", "WARNING",
        "--concurrency", "2", "--queues", "default,hpo,drift,abtest,ingest",
        "--schedule", str(Path(settings.var_dir) / "celerybeat-schedule"),
    )

    stop = threading.Event()
    db = Database(settings.database_url)
    # With no broker, the relay hands each event straight to the consumers that would read its queue.
    consumers = [training_outcomes(), version_registrations()]
    relay = Relay(db, publisher_from_settings(settings, consumers, db), batch_size=settings.relay_batch_size)
    relay_thread = threading.Thread(target=relay.run_forever, args=(stop, settings.relay_poll_seconds), daemon=True)
    relay_thread.start()

    print(f"Modelyard is listening on http://{bind}  (API under /api/v1, OpenAPI at /api/v1/openapi.json)", flush=True)
    print(login, flush=True)
    code = supervisor.wait()
    stop.set()
    relay_thread.join(timeout=5)
    return code


if __name__ == "__main__":
    sys.exit(main())
