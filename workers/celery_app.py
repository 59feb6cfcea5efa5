"""The Celery app: queues per worker pool, late acks, JSON only, and beat's schedule.

`make_celery(settings)` builds it without touching the network; the module-level `app` (what
`celery -A workers.celery_app worker|beat` loads) only reads settings. The broker is RabbitMQ in the
stack and kombu's SQLAlchemy transport (`sqla+sqlite:///var/broker.db`) in the embedded default.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

from celery import Celery, Task
from celery.signals import worker_process_init
from sqlalchemy.orm import Session

from shared.config import Settings, load_settings
from shared.db import Database
from shared.events.topology import WORK_QUEUES, work_queues

TASK_MODULES = ("workers.maintenance",)
# Tasks live in workers/<pool>.py and go to that pool's queue; anything else goes to "default".
TASK_ROUTES = {f"workers.{pool}.*": {"queue": pool} for pool in WORK_QUEUES if pool != "default"}
HOUR = 3600.0


class ModelyardCelery(Celery):
    def __init__(self, settings: Settings, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modelyard_settings = settings


def _transport_options(broker_url: str) -> dict:
    if broker_url.startswith(("sqla+", "sqlalchemy+")):
        # kombu hands these straight to create_engine: wait on SQLite's lock instead of failing.
        return {"connect_args": {"timeout": 30}} if "sqlite" in broker_url else {}
    return {"confirm_publish": True}


def make_celery(settings: Settings) -> ModelyardCelery:
    """The Celery app for `settings`; creates no connection until a task is sent or a worker starts."""
    app = ModelyardCelery(settings, "modelyard", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=_transport_options(settings.broker_url),
        broker_connection_retry_on_startup=True,
        task_queues=work_queues(),
        task_default_queue="default",
        task_default_exchange="default",
        task_default_routing_key="default",
        task_routes=TASK_ROUTES,
        # A task is acknowledged after it ran, and put back if its worker died: tasks must be idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Tasks record their outcome in their own tables (training jobs, drift reports...).
        task_ignore_result=True,
        imports=TASK_MODULES,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "purge-sent-outbox": {"task": "workers.maintenance.purge_sent_outbox", "schedule": HOUR},
        },
    )
    return app


@functools.cache
def worker_database(url: str) -> Database:
    """One Database per worker process, made on first use (after the fork, never inherited)."""
    return Database(url)


@worker_process_init.connect
def _forget_parent_databases(**_) -> None:
    worker_database.cache_clear()


class DatabaseTask(Task):
    """Base task that opens exactly one transaction on its worker process's Database."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with worker_database(self.app.modelyard_settings.database_url).transaction() as session:
            yield session


app = make_celery(load_settings())
