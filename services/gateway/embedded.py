"""`make run`: the whole platform on one machine with no external server.

SQLite under var/, artifacts under var/artifacts, the in-process cache, events from the outbox to local
subscribers, and a Celery worker (with beat) on kombu's SQLAlchemy transport. Same code paths as the
distributed stack; only the URLs differ.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from pathlib import Path

from services.gateway.processes import Supervisor, gunicorn, local_secrets
from services.identity.users import ensure_admin
from shared.config import load_settings
from shared.db import Database
from shared.events.relay import Relay, publisher_from_settings
from shared.schema import migrate


def main() -> int:
    os.environ.update(local_secrets(load_settings()))
    settings = load_settings()
    for directory in (settings.var_dir, settings.artifact_root, settings.data_root):
        Path(directory).mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)

    db = Database(settings.database_url)
    password = settings.admin_password or secrets.token_urlsafe(12)
    with db.transaction() as session:
        _, created = ensure_admin(session=session, username=settings.admin_username, password=password)

    bind = os.environ.get("MODELYARD_BIND", "127.0.0.1:8000")
    supervisor = Supervisor(env=dict(os.environ))
    supervisor.start("web", gunicorn(bind, "services.gateway.allinone:create_app()", workers=2, threads=4))
    supervisor.python(
        "worker", "-m", "celery", "-A", "workers.celery_app", "worker", "--beat", "--loglevel", "WARNING",
        "--concurrency", "2", "--queues", "default,hpo,drift,abtest,ingest",
        "--schedule", str(Path(settings.var_dir) / "celerybeat-schedule"),
    )

    stop = threading.Event()
    relay = Relay(db, publisher_from_settings(settings), batch_size=settings.relay_batch_size)
    relay_thread = threading.Thread(target=relay.run_forever, args=(stop, settings.relay_poll_seconds), daemon=True)
    relay_thread.start()

    print(f"Modelyard is listening on http://{bind}  (API under /api/v1, OpenAPI at /api/v1/openapi.json)", flush=True)
    if created:
        shown = "from MODELYARD_ADMIN_PASSWORD" if settings.admin_password else f"password: {password}"
        print(f"Log in as {settings.admin_username!r}, {shown}  (printed once; keep it)", flush=True)
    else:
        print(f"Log in as {settings.admin_username!r} with the password set when it was created.", flush=True)
    code = supervisor.wait()
    stop.set()
    relay_thread.join(timeout=5)
    return code


if __name__ == "__main__":
    sys.exit(main())
