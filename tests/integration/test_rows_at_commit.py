"""Audit rows and outbox events are queued in the session and inserted just before its commit."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shared.audit import AuditEntry, record
from shared.db import Database, insert_queued, queue_insert, utcnow
from shared.events.outbox import OutboxEvent, emit

pytestmark = pytest.mark.integration


def _queue_both(session, name: str) -> None:
    record(session, actor_id=None, actor="system", action="thing.done", resource_type="thing",
           resource_id=name, request_id="r")
    emit(session, "dataset.registered", {"dataset_id": "6f1b3c1e-0d5e-4c55-9d7a-4d0f3b1f1a11", "name": name,
                                         "sha256": "0" * 64, "rows": 1, "actor": "system"}, producer="test")


def _names(session) -> tuple[list[str], list[str]]:
    audited = session.scalars(sa.select(AuditEntry.resource_id).order_by(AuditEntry.seq)).all()
    events = [row["payload"]["name"] for row in session.scalars(sa.select(OutboxEvent.envelope).order_by(OutboxEvent.seq))]
    return audited, events


def test_queued_rows_are_written_by_a_commit_only(app):
    db = app.extensions["modelyard"].db
    session = db.sessions()
    _queue_both(session, "rolled-back")
    session.rollback()
    _queue_both(session, "closed")
    session.close()
    _queue_both(session, "committed")
    _queue_both(session, "committed-too")  # two rows per table take the statement-per-table path
    session.commit()
    session.close()
    with db.transaction() as check:
        assert _names(check) == (["committed", "committed-too"], ["committed", "committed-too"])



def test_queued_rows_wait_for_their_transactions_commit(app):
    db = app.extensions["modelyard"].db
    session = db.sessions()
    _queue_both(session, "early")
    insert_queued(session)
    with db.transaction() as other:
        assert _names(other) == ([], [])
    session.rollback()
    session.close()
    with db.transaction() as check:
        assert _names(check) == ([], [])


@pytest.mark.postgres_only  # the one statement that commits itself is Postgres's; SQLite inserts per table
def test_rows_alone_in_their_transaction_commit_with_their_statement(app):
    db = app.extensions["modelyard"].db
    session = db.sessions()
    _queue_both(session, "early")
    insert_queued(session, alone=True)
    with db.transaction() as other:
        assert _names(other) == (["early"], ["early"])
    session.rollback()  # nothing left to undo: their one statement committed them
    session.close()
    with db.transaction() as check:
        assert _names(check) == (["early"], ["early"])


@pytest.mark.postgres_only  # the one statement that commits itself is Postgres's
def test_rows_asked_to_go_alone_after_a_statement_commit_with_their_transaction(app):
    db = app.extensions["modelyard"].db
    session = db.sessions()
    session.execute(sa.select(sa.func.count()).select_from(AuditEntry))  # a read: the transaction has begun
    _queue_both(session, "in-a-larger-unit")
    insert_queued(session, alone=True)
    session.rollback()
    session.close()
    with db.transaction() as check:
        assert _names(check) == ([], [])


@pytest.mark.postgres_only
def test_nothing_may_run_in_a_transaction_after_its_rows_went_alone(app):
    db = app.extensions["modelyard"].db
    session = db.sessions()
    try:
        _queue_both(session, "alone")
        insert_queued(session, alone=True)
        with pytest.raises(RuntimeError, match="nothing may run in it after them"):
            session.execute(sa.select(1))
        session.rollback()
        assert session.execute(sa.select(1)).scalar() == 1  # the session's next transaction is a new one
    finally:
        session.close()


@pytest.mark.postgres_only
def test_a_connection_that_ran_rows_alone_goes_back_to_the_pool_transactional(app, database_url):
    # One pooled connection, so every session below gets the one that ran the rows alone.
    db = Database(database_url, pool_size=1, max_overflow=0)
    event_id = "9d2c4e1a-5b7f-4c3e-8a1d-2f6b0c9e7a55"

    def alone(name: str) -> None:
        session = db.sessions()
        record(session, actor_id=None, actor="system", action="thing.done", resource_type="thing",
               resource_id=name, request_id="r")
        queue_insert(session, OutboxEvent.__table__, {"event_id": event_id, "type": "dataset.registered",
                                                      "envelope": {"payload": {"name": name}}, "created_at": utcnow(),
                                                      "attempts": 0})
        try:
            insert_queued(session, alone=True)
        finally:
            session.close()

    try:
        alone("first")
        with pytest.raises(IntegrityError):
            alone("same-event-id")  # a failed statement goes back to the pool too
        for _ in range(2):
            with db.sessions() as session:
                _queue_both(session, "undone")
                insert_queued(session)
                session.rollback()
        with db.transaction() as check:
            assert _names(check) == (["first"], ["first"])
    finally:
        db.dispose()
