"""The one way to reach the database: an engine configured here, and `transaction()`.

A request, a Celery task and a consumed message each open exactly one transaction at their edge;
helpers and use cases receive the session and never commit.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timezone
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

# JSONB on Postgres (indexable, compact), plain JSON on the embedded SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def normalise_url(url: str) -> str:
    """Name the driver: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, older as psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL lets the web server, the worker and the relay read while one writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return sa.create_engine(
        url,
        # No pre-ping: it costs a round trip on every request (~6% of a model create). A connection that
        # died with its server fails one statement instead, SQLAlchemy then discards the whole pool,
        # and the request gets a 503 to retry (shared.errors): nothing half-done is accepted.
        pool_timeout=10,
        # psycopg prepares a statement after five runs, and Postgres may then switch to a generic plan
        # that cannot see the search text (a trigram search fell from 5 ms to 80 ms): always plan anew.
        connect_args={"connect_timeout": 5, "options": "-c plan_cache_mode=force_custom_plan"},
        **kwargs,
    )


class Database:
    """An engine and its session factory; one per process, made by the app or worker factory."""

    def __init__(self, url: str, **engine_kwargs):
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """Open a session, commit once at the end, roll back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
