"""Gunicorn hooks for `make run`'s web process: its one worker also relays events and seals the audit chain.

The embedded cache lives in process memory, so every write it must see has to happen in the one
process that serves reads: the API and the event consumers that update models share this worker.
"""

from __future__ import annotations

import threading

from launch.gunicorn_hooks import close_app

_stop = threading.Event()


def post_worker_init(worker) -> None:
    # Imported here: gunicorn's master loads this file too, and only the worker needs the platform.
    from launch.catalog import consumers as consumer_paths
    from shared.audit import seal_forever
    from shared.config import load_settings
    from shared.db import Database
    from shared.events.consumer import load_consumer
    from shared.events.relay import Relay, publisher_from_settings

    settings = load_settings()
    db = Database(settings.database_url)
    # With no broker, the relay hands each event straight to the consumers that would read its queue:
    # every consumer the manifests declare (one missing here would lose its events under `make run` only).
    consumers = [load_consumer(path) for path in consumer_paths()]
    relay = Relay(db, publisher_from_settings(settings, consumers, db), batch_size=settings.relay_batch_size)
    threading.Thread(target=relay.run_forever, args=(_stop, settings.relay_poll_seconds), name="relay",
                     daemon=True).start()
    threading.Thread(target=seal_forever, args=(db, _stop), name="audit-sealer", daemon=True).start()


def worker_exit(server, worker) -> None:
    _stop.set()
    close_app(getattr(worker, "wsgi", None))
