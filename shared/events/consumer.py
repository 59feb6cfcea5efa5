"""Consumer base: a named handler for some event types, run at most once per event id.

Delivery is at-least-once (the relay may publish twice, RabbitMQ may redeliver), so `process` records
the event id in `processed_events` in the same transaction as the handler's own writes: either both
commit or neither does, and a second delivery finds the id and is skipped.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.db import Base, Database, utcnow

log = logging.getLogger(__name__)


class ProcessedEvent(Base):
    """An event id a named consumer has handled; the primary key makes handling idempotent."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class EventConsumer:
    """Subclass with a unique `name`, the `routing_keys` (topic patterns) it wants, and `handle`.

    `handle` gets the session of the one transaction that also records the event as processed; it
    must not commit. Raising makes the message retried, then dead-lettered.
    """

    name: str = ""
    routing_keys: tuple[str, ...] = ()

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        raise NotImplementedError


class _AlreadyProcessed(Exception):
    pass


def process(db: Database, consumer: EventConsumer, envelope: dict[str, Any]) -> bool:
    """Handle `envelope` once for `consumer`; False when this event id was already processed."""
    event_id = uuid.UUID(str(envelope["id"]))
    try:
        with db.transaction() as session:
            if session.get(ProcessedEvent, (consumer.name, event_id)) is not None:
                raise _AlreadyProcessed
            session.add(ProcessedEvent(consumer=consumer.name, event_id=event_id))
            try:
                # Claim the id before handling: a racing delivery of the same event waits on this row
                # (Postgres) or the database lock (SQLite), then fails here instead of handling it twice.
                session.flush()
            except IntegrityError as exc:
                raise _AlreadyProcessed from exc
            consumer.handle(session, envelope)
    except _AlreadyProcessed:
        log.info("consumer %s skips event %s (%s): already processed", consumer.name, event_id, envelope.get("type"))
        return False
    return True


def load_consumer(path: str) -> EventConsumer:
    """Build a consumer from "package.module:factory" (a class or a function returning an EventConsumer).

    Entry points take consumers by path because `shared` must not import any service.
    """
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"consumer path {path!r} must look like 'package.module:factory'")
    factory: Callable[[], EventConsumer] = getattr(importlib.import_module(module_name), attr)
    consumer = factory()
    if not isinstance(consumer, EventConsumer) or not consumer.name or not consumer.routing_keys:
        raise ValueError(f"{path} did not make an EventConsumer with a name and routing keys")
    return consumer
