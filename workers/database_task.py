"""The base task of every pool: one transaction on its worker process's Database.

Kept apart from celery_app.py so that beat, which builds the same app to send tasks by name, imports
no SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

from celery import Task
from celery.signals import worker_process_init
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import Database
from shared.tasks import CELERY_APP_KEY, attach_celery


@functools.cache
def worker_database(url: str) -> Database:
    """One Database per worker process, made on first use (after the fork, never inherited)."""
    return Database(url)


@worker_process_init.connect
def _forget_parent_databases(**_) -> None:
    worker_database.cache_clear()


class DatabaseTask(Task):
    """Base task that opens exactly one transaction on its worker process's Database."""

    @property
    def settings(self) -> Settings:
        return self.app.modelyard_settings

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction; tasks it enqueues (shared.tasks.enqueue_after_commit) leave after its commit."""
        db = worker_database(self.settings.database_url)
        if db.sessions.kw.get("info", {}).get(CELERY_APP_KEY) is not self.app:
            attach_celery(db, self.app)
        with db.transaction() as session:
            yield session
