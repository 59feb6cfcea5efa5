"""Celery tasks leave only after the transaction that asked for them commits.

Web code enqueues by task name (it never imports `workers/`): `enqueue_after_commit` sends the task
from the transaction's after-commit callbacks (shared.db.after_commit); a rollback drops it. A job row
written in the same transaction is therefore always there when the worker looks for it, and a failed
request never starts work.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import orjson
from celery import Celery
from kombu.serialization import register

from shared import strict_json
from shared.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.db import Database

CELERY_APP_KEY = "modelyard.celery_app"



def _plain_dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer past 64 bits, which Python's json writes exactly
        return json.dumps(value).encode()


# Bulk messages of plain JSON values (serving's batches of prediction records) are encoded with orjson:
# kombu's json encoded a batch of 500 records in a third of a replica's CPU time under 1,000-row
# predictions. Its own content type, so that kombu's json (which revives datetimes and uuids it wrote
# as tagged objects) keeps reading every other message. NaN and infinity arrive as null (orjson writes
# them so); serving sends none, its values are checked finite.
PLAIN_JSON = "plain-json"
register(PLAIN_JSON, _plain_dumps, strict_json.plain_loads, content_type="application/x-plain-json",
         content_encoding="binary")
ACCEPTED_CONTENT = ["json", PLAIN_JSON]


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
                    task_serializer="json", accept_content=ACCEPTED_CONTENT, task_ignore_result=True)
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
