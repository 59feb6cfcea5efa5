"""The transactional outbox: an event is a row written in the same transaction as the change.

`emit` is the only way to publish. The relay (`shared.events.relay`) later sends unsent rows and marks
them sent, so an event leaves if and only if its transaction committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.db import Base, JSONType, queue_insert, utcnow
from shared.events.catalogue import build_envelope


class OutboxEvent(Base):
    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True)
    type: Mapped[str] = mapped_column(sa.String(128))
    envelope: Mapped[dict] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)

    __table_args__ = (
        # The relay's only query: unsent rows in order. A partial index keeps it small.
        sa.Index("ix_outbox_unsent", "seq", postgresql_where=sa.text("sent_at IS NULL"),
                 sqlite_where=sa.text("sent_at IS NULL")),
    )


def emit(session: Session, event_type: str, payload: dict, *, producer: str) -> uuid.UUID:
    """Validate `payload` against the catalogue and queue the event in the caller's transaction."""
    envelope = build_envelope(event_type, payload, producer=producer)
    event_id = uuid.UUID(envelope["id"])
    # Inserted with the write's audit row, in one statement (see shared.db.queue_insert).
    queue_insert(session, OutboxEvent.__table__, {"event_id": event_id, "type": event_type, "envelope": envelope,
                                                  "created_at": utcnow(), "attempts": 0})
    return event_id


def purge_sent(*, session: Session, older_than: timedelta) -> int:
    """Delete outbox rows sent longer than `older_than` ago; unsent rows are never touched."""
    cutoff = utcnow() - older_than
    result = session.execute(
        sa.delete(OutboxEvent).where(OutboxEvent.sent_at.is_not(None), OutboxEvent.sent_at < cutoff)
    )
    return result.rowcount
