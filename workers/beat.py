"""The Celery app beat runs (`celery -A workers.beat beat`): the schedule without the task modules."""

from __future__ import annotations

from shared.config import load_settings
from workers.celery_app import make_celery

app = make_celery(load_settings(), with_tasks=False)
