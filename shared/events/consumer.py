"""Consumer base: placeholder for the table of processed event ids (filled in by the events work)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow


class ProcessedEvent(Base):
    """An event id a named consumer has handled; the primary key makes handling idempotent."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
