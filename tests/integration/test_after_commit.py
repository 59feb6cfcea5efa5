"""Work that waits for a commit (shared.db.after_commit): it runs once the outer transaction commits, in
the order it was asked for, and never for a transaction that rolled back, whatever the session does next."""

from __future__ import annotations

import logging
import uuid

import pytest
import sqlalchemy as sa

from shared.db import Database, after_commit
from shared.tasks import attach_celery, enqueue_after_commit

pytestmark = pytest.mark.integration

# A scratch table outside the migrated schema: a row to look for from another connection.
PROBES = sa.Table("after_commit_probes", sa.MetaData(), sa.Column("id", sa.Uuid, primary_key=True))


@pytest.fixture(scope="module")
def db(database_url):
    database = Database(database_url)
    PROBES.create(database.engine)
    yield database
    PROBES.drop(database.engine)
    database.dispose()


@pytest.fixture
def session(db):
    session = db.sessions()
    yield session
    session.close()


def test_callbacks_run_once_after_the_commit_in_the_order_they_were_registered(db, session):
    probe = uuid.uuid4()
    ran = []

    def visible_elsewhere() -> bool:
        with db.transaction() as other:
            return other.scalar(sa.select(PROBES.c.id).where(PROBES.c.id == probe)) is not None

    session.execute(sa.insert(PROBES).values(id=probe))
    after_commit(session, lambda: ran.append(("first", visible_elsewhere())))
    after_commit(session, lambda: ran.append(("second", visible_elsewhere())))
    assert ran == []
    session.commit()
    assert ran == [("first", True), ("second", True)]
    session.execute(sa.select(1))
    session.commit()  # the session's next transaction asked for nothing
    assert ran == [("first", True), ("second", True)]


def test_a_rollback_or_a_close_drops_them_and_the_sessions_next_commit_does_not_run_them(session):
    ran = []
    session.execute(sa.select(1))
    after_commit(session, lambda: ran.append("rolled back"))
    session.rollback()
    after_commit(session, lambda: ran.append("closed"))  # asked before the transaction ran anything
    session.close()
    after_commit(session, lambda: ran.append("committed"))
    session.commit()
    assert ran == ["committed"]


def test_a_savepoint_neither_runs_them_when_released_nor_drops_them_when_rolled_back(session):
    ran = []
    after_commit(session, lambda: ran.append("before the savepoints"))
    savepoint = session.begin_nested()
    after_commit(session, lambda: ran.append("in a rolled-back savepoint"))
    savepoint.rollback()
    savepoint = session.begin_nested()
    after_commit(session, lambda: ran.append("in a released savepoint"))
    savepoint.commit()
    assert ran == []
    session.commit()
    assert ran == ["before the savepoints", "in a rolled-back savepoint", "in a released savepoint"]


def test_a_callback_that_raises_is_logged_and_neither_stops_the_others_nor_fails_the_commit(db, session, caplog):
    probe = uuid.uuid4()
    ran = []

    def broken() -> None:
        raise RuntimeError("the broker is down")

    session.execute(sa.insert(PROBES).values(id=probe))
    after_commit(session, lambda: ran.append("before"))
    after_commit(session, broken)
    after_commit(session, lambda: ran.append("after"))
    with caplog.at_level(logging.ERROR, logger="shared.db"):
        session.commit()
    assert ran == ["before", "after"]
    [failure] = caplog.records
    assert failure.exc_info[0] is RuntimeError and "broken" in failure.getMessage()
    with db.transaction() as check:
        assert check.scalar(sa.select(PROBES.c.id).where(PROBES.c.id == probe)) == probe


class SentTasks:
    """Stands in for a Celery app: remembers what it was asked to send; fails for the task named `fail`."""

    def __init__(self):
        self.sent = []

    def send_task(self, name, args, queue, countdown=None):
        if name == "fail":
            raise ConnectionError("broker unreachable")
        self.sent.append((name, args, queue))


def test_tasks_leave_in_order_after_the_commit_and_one_that_cannot_does_not_hold_back_the_rest(database_url):
    app = SentTasks()
    db = Database(database_url)
    attach_celery(db, app)
    try:
        with pytest.raises(RuntimeError), db.transaction() as session:
            enqueue_after_commit(session, "dropped", queue="q")
            raise RuntimeError("the request failed")
        with db.transaction() as session:
            enqueue_after_commit(session, "first", 1, queue="q")
            savepoint = session.begin_nested()
            enqueue_after_commit(session, "kept by the savepoint's rollback", queue="q")
            savepoint.rollback()
            enqueue_after_commit(session, "fail", queue="q")
            enqueue_after_commit(session, "last", "x", queue="other")
            assert app.sent == []
        assert app.sent == [("first", [1], "q"), ("kept by the savepoint's rollback", [], "q"),
                            ("last", ["x"], "other")]
    finally:
        db.dispose()
