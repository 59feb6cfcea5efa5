"""Celery tasks leave only after the transaction that asked for them commits.

Web code enqueues by task name (it never imports `workers/`): `enqueue_after_commit` keeps the task
on the session and sends it from the session's "after_commit" hook; a rollback drops it. A job row
written in the same transaction is therefore always there when the worker looks for it, and a failed
request never starts work.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import Celery

from shared.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, SessionTransaction

    from shared.db import Database

log = logging.getLogger(__name__)

CELERY_APP_KEY = "modelyard.celery_app"
_PENDING_KEY = "modelyard.pending_tasks"


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


def enqueue_after_commit(session: Session, task_name: str, *args: Any, queue: str) -> None:
    """Send task `task_name(*args)` to `queue` once `session` commits; never if it rolls back."""
    # Imported here: beat builds its Celery app from this module's broker options and, without this
    # import at the top, carries no SQLAlchemy (about 20 MiB resident).
    from sqlalchemy import event

    if session.info.get(CELERY_APP_KEY) is None:
        raise RuntimeError("this session cannot enqueue tasks: call shared.tasks.attach_celery(db, app) first")
    pending = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = []
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_soft_rollback", _drop_pending)
    pending.append((task_name, args, queue))


def _send_pending(session: Session) -> None:
    pending, session.info[_PENDING_KEY] = session.info.get(_PENDING_KEY) or [], []
    app = session.info[CELERY_APP_KEY]
    for task_name, args, queue in pending:
        try:
            app.send_task(task_name, args=list(args), queue=queue)
        except Exception:
            # The change is already committed; raising now would tell the caller it was not. The job
            # stays visible in its own table as queued, where an operator (or a sweep) can see it.
            log.exception("committed, but could not enqueue %s%r on %s", task_name, args, queue)


def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    # A rolled-back savepoint leaves the outer transaction, and the tasks it asked for, alive.
    if not previous_transaction.nested and session.info.get(_PENDING_KEY):
        dropped = session.info[_PENDING_KEY]
        session.info[_PENDING_KEY] = []
        log.debug("rollback dropped %d pending tasks", len(dropped))
