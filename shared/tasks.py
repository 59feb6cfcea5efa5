"""Celery tasks leave only after the transaction that asked for them commits.

Web code enqueues by task name (it never imports `workers/`): `enqueue_after_commit` sends the task
from the transaction's after-commit callbacks (shared.db.after_commit); a rollback drops it. A job row
written in the same transaction is therefore always there when the worker looks for it, and a failed
request never starts work.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from celery import Celery

from shared.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.db import Database

CELERY_APP_KEY = "modelyard.celery_app"


def broker_transport_options(broker_url: str) -> dict:
    if broker_url.startswith(("sqla+", "sqlalchemy+")):
        # kombu hands these straight to create_engine: wait on SQLite's lock instead of failing.
        return {"connect_args": {"timeout": 30}} if "sqlite" in broker_url else {}
    return {"confirm_publish": True}


def task_sender(settings: Settings) -> Celery:
    """A Celery app that only sends tasks by name, for web code (which never imports `workers/`)."""
    app = Celery("modelyard", set_as_current=False)
    app.conf.update(broker_url=settings.broker_url,
                    broker_transport_options=broker_transport_options(settings.broker_url),
                    task_serializer="json", accept_content=["json"], task_ignore_result=True)
    return app


def attach_celery(db: Database, celery_app: Any) -> None:
    """Let every session of `db` enqueue tasks on `celery_app`; the app or worker factory calls this once."""
    info = dict(db.sessions.kw.get("info") or {})
    info[CELERY_APP_KEY] = celery_app
    db.sessions.configure(info=info)


def enqueue_after_commit(session: Session, task_name: str, *args: Any, queue: str,
                         countdown: float | None = None) -> None:
    """Send task `task_name(*args)` to `queue` once `session` commits (to run `countdown` seconds after
    that, if given); never if it rolls back.

    A task that cannot be sent then is logged, not raised: the change is already committed, and its
    job stays visible in its own table as queued, where an operator (or a sweep) can see it.
    """
    # Imported here: beat builds its Celery app from this module's broker options and, without this
    # import at the top, carries no SQLAlchemy (about 20 MiB resident).
    from shared.db import after_commit

    app = session.info.get(CELERY_APP_KEY)
    if app is None:
        raise RuntimeError("this session cannot enqueue tasks: call shared.tasks.attach_celery(db, app) first")
    after_commit(session, functools.partial(app.send_task, task_name, args=list(args), queue=queue,
                                            countdown=countdown))
