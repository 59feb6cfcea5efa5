"""The Celery app: queues per worker pool, late acks, JSON only, and beat's schedule.

Its task modules, queues and beat entries are the services' manifests', read through launch.catalog.

`make_celery(settings)` builds it without touching the network; the module-level `app` (what
`celery -A workers.celery_app worker|beat` loads) only reads settings. The broker is RabbitMQ in the
stack and kombu's SQLAlchemy transport (`sqla+sqlite:///var/broker.db`) in the embedded default.
The tasks' base class, which owns their database, is in database_task.py.
"""

from __future__ import annotations

from celery import Celery

from launch import catalog
from shared.config import Settings, load_settings
from shared.events.topology import work_queues
from shared.tasks import ACCEPTED_CONTENT, broker_transport_options


class ModelyardCelery(Celery):
    def __init__(self, settings: Settings, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modelyard_settings = settings


def _task_routes(settings: Settings) -> dict:
    # A task named "<queue>.<task>" goes to that queue; anything else goes to "default".
    return {f"{queue}.*": {"queue": settings.task_queue(queue)} for queue in catalog.queues()
            if queue != catalog.DEFAULT_QUEUE}


def _beat_schedule(settings: Settings) -> dict:
    schedule = {}
    for name, entry in catalog.beat_schedule().items():
        schedule[name] = {"task": entry.task, "schedule": entry.every_seconds}
        if entry.queue:
            schedule[name]["options"] = {"queue": settings.task_queue(entry.queue)}
    return schedule


def make_celery(settings: Settings, *, with_tasks: bool = True) -> ModelyardCelery:
    """The Celery app for `settings`; creates no connection until a task is sent or a worker starts.

    `with_tasks=False` is for beat, which sends tasks by name and need not import them (nor the ML
    libraries they import)."""
    app = ModelyardCelery(settings, "modelyard", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=broker_transport_options(settings.broker_url),
        broker_connection_retry_on_startup=True,
        task_queues=work_queues(catalog.queues(), settings.task_queue_prefix),
        task_default_queue=settings.task_queue(catalog.DEFAULT_QUEUE),
        task_default_exchange=settings.task_queue(catalog.DEFAULT_QUEUE),
        task_default_routing_key=settings.task_queue(catalog.DEFAULT_QUEUE),
        task_routes=_task_routes(settings),
        # A task is acknowledged after it ran, and put back if its worker died: tasks must be idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=ACCEPTED_CONTENT,
        # Tasks record their outcome in their own tables (training jobs, drift reports...).
        task_ignore_result=True,
        imports=catalog.task_modules() if with_tasks else (),
        timezone="UTC",
        enable_utc=True,
        beat_schedule=_beat_schedule(settings),
    )
    return app


app = make_celery(load_settings())
