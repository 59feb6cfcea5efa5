"""The Celery app: queues per worker pool, late acks, JSON only, and beat's schedule.

`make_celery(settings)` builds it without touching the network; the module-level `app` (what
`celery -A workers.celery_app worker|beat` loads) only reads settings. The broker is RabbitMQ in the
stack and kombu's SQLAlchemy transport (`sqla+sqlite:///var/broker.db`) in the embedded default.
The tasks' base class, which owns their database, is in database_task.py.
"""

from __future__ import annotations

from celery import Celery

from shared.config import Settings, load_settings
from shared.events.topology import WORK_QUEUES, work_queues
from shared.tasks import broker_transport_options

TASK_MODULES = ("workers.maintenance", "workers.hpo")
HOUR = 3600.0
MINUTE = 60.0


class ModelyardCelery(Celery):
    def __init__(self, settings: Settings, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modelyard_settings = settings


def _task_routes(settings: Settings) -> dict:
    # Tasks live in workers/<pool>.py (named "<pool>.<task>" or "workers.<pool>.<task>") and go to that
    # pool's queue; anything else goes to "default".
    routes = {}
    for pool in WORK_QUEUES:
        if pool != "default":
            routes[f"workers.{pool}.*"] = routes[f"{pool}.*"] = {"queue": settings.task_queue(pool)}
    return routes


def make_celery(settings: Settings, *, with_tasks: bool = True) -> ModelyardCelery:
    """The Celery app for `settings`; creates no connection until a task is sent or a worker starts.

    `with_tasks=False` is for beat, which sends tasks by name and need not import them (nor the ML
    libraries they import)."""
    app = ModelyardCelery(settings, "modelyard", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=broker_transport_options(settings.broker_url),
        broker_connection_retry_on_startup=True,
        task_queues=work_queues(settings.task_queue_prefix),
        task_default_queue=settings.task_queue("default"),
        task_default_exchange=settings.task_queue("default"),
        task_default_routing_key=settings.task_queue("default"),
        task_routes=_task_routes(settings),
        # A task is acknowledged after it ran, and put back if its worker died: tasks must be idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Tasks record their outcome in their own tables (training jobs, drift reports...).
        task_ignore_result=True,
        imports=TASK_MODULES if with_tasks else (),
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "purge-sent-outbox": {"task": "workers.maintenance.purge_sent_outbox", "schedule": HOUR},
            "purge-stale-uploads": {"task": "workers.maintenance.purge_stale_uploads", "schedule": HOUR},
            "purge-idempotency-keys": {"task": "workers.maintenance.purge_idempotency_keys", "schedule": HOUR},
            # Heals trainings whose next task was committed but never reached the broker.
            "redispatch-stalled-trainings": {"task": "hpo.redispatch_stalled", "schedule": MINUTE,
                                             "options": {"queue": settings.task_queue("default")}},
        },
    )
    return app


app = make_celery(load_settings())
