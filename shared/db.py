"""The one way to reach the database: an engine configured here, and `transaction()`.

A request, a Celery task and a consumed message each open exactly one transaction at their edge;
helpers and use cases receive the session and never commit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, mapped_column, sessionmaker

log = logging.getLogger(__name__)

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
    engine = sa.create_engine(
        url,
        # No pre-ping: it costs a round trip on every request (~6% of a model create). A connection that
        # died with its server fails one statement instead, SQLAlchemy then discards the whole pool,
        # and the request gets a 503 to retry (shared.errors): nothing half-done is accepted.
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
        **kwargs,
    )

    @event.listens_for(engine, "do_execute")
    def _unprepared(cursor, statement, parameters, context) -> bool | None:
        # psycopg prepares a statement after five runs, and Postgres may then plan it once for any
        # parameters. A statement whose best plan depends on its values (a text search: 5 ms with the
        # trigram index, 80 ms with the generic plan) asks to be planned on every run instead.
        if context.execution_options.get(PLAN_EACH_RUN):
            cursor.execute(statement, parameters, prepare=False)
            return True
        return None

    return engine


def select_for_update(session: Session, statement: sa.Select) -> sa.Select:
    """`statement` locking the rows it reads until commit, and reading their current values.

    SQLite has no row locks and ignores FOR UPDATE. There the database's one write lock is taken
    first, by a write that changes nothing (waiting up to busy_timeout), so read-then-write steps still
    take turns instead of colliding on a unique key or losing an update.
    """
    if session.get_bind().dialect.name == "sqlite":
        table = statement.get_final_froms()[0]
        session.execute(sa.update(table).where(sa.false()).values({c.name: c for c in table.primary_key}))
    # populate_existing: a row read earlier in this session must not hide the locked, current values.
    return statement.with_for_update().execution_options(populate_existing=True)


# The execution option (`statement.execution_options(plan_each_run=True)`) that make_engine honours.
PLAN_EACH_RUN = "plan_each_run"


def loaded(cls: type[Base], **values: Any) -> Base:
    """An instance of a mapped class holding `values` the way a row loaded from the database does
    (straight in its __dict__), without __init__'s change event per attribute: a fifth of the CPU.
    For rows just written by a statement of their own, to be read and never added to a session."""
    instance = sa.inspect(cls).class_manager.new_instance()
    instance.__dict__.update(values)
    return instance


# What a session's current transaction keeps lives in one dict in session.info, dropped when the
# transaction ends (`_forget_transaction`): nothing in it can outlive its transaction. The hooks that
# read it listen on the Session class, not on each session: registering per session costs more than
# the one statement of queued rows saves, on every write.
_TRANSACTION = "modelyard_transaction"
# Keys of that dict:
_QUEUED = "modelyard_queued_rows"
_AFTER_COMMIT = "modelyard_after_commit"
# Set while a transaction holds a connection (it has run a statement): its queued rows are not alone.
_TOUCHED = "modelyard_touched"
# Set once a transaction's queued rows committed by themselves: nothing may run in it after them.
_WENT_ALONE = "modelyard_went_alone"


def transaction_info(session: Session) -> dict:
    """A dict for `session`'s current transaction, as `session.info` is for the session: dropped when
    the transaction commits, rolls back or closes, so nothing in it reaches the session's next one.

    A savepoint's end is not the end of its transaction: what was kept inside one that rolled back stays.
    """
    if not session.in_transaction():
        session.begin()  # so that a rollback or close without a commit ends a transaction, dropping the dict
    return session.info.setdefault(_TRANSACTION, {})


def queue_insert(session: Session, table: sa.Table, row: dict) -> None:
    """Queue `row` for `table`; `insert_queued` inserts it, at the latest just before `session` commits.
    Dropped if the transaction rolls back first.

    For rows nothing reads back before they are inserted, such as the audit row and the outbox event
    every write adds: on Postgres all queued rows go in one statement, which saves a statement's round
    trip and CPU per row on every write. Queue them outside savepoints (a savepoint's rollback does not
    drop them), and give a value to every column with a Python-side default (the statement applies none).
    """
    transaction_info(session).setdefault(_QUEUED, {}).setdefault(table, []).append(row)


@event.listens_for(Session, "before_commit")
def insert_queued(session: Session, *, alone: bool = False) -> None:
    """Insert the queued rows now, e.g. so that a constraint they break surfaces where it can be answered.

    `alone` asks that these rows, when they are the whole of the transaction, go in one statement that
    commits itself (autocommit, on a connection of its own), which spares the round trips of BEGIN and
    COMMIT: a fifth of a model create's CPU. It is honoured only when the transaction has run nothing
    before (it holds no connection yet), and a statement run in the transaction after it is an error:
    the shortcut cannot commit part of a larger unit of work by accident.
    """
    kept = session.info.get(_TRANSACTION)
    queued = kept.pop(_QUEUED, None) if kept else None
    if not queued:
        return
    alone = alone and not kept.get(_TOUCHED)
    if (len(queued) > 1 and all(len(rows) == 1 for rows in queued.values())
            and session.get_bind().dialect.name == "postgresql"):
        # The usual write: one row per table. (A multi-row VALUES statement is never cached by
        # SQLAlchemy, and SQLite has no INSERT inside WITH: those take a statement per table.)
        rows = {table: table_rows[0] for table, table_rows in queued.items()}
        statement = _one_statement(tuple((table, tuple(row)) for table, row in rows.items()))
        params = {f"p{t}_{column}": value for t, row in enumerate(rows.values()) for column, value in row.items()}
        if alone:
            _execute_alone(session.get_bind(), statement, params)
            kept[_WENT_ALONE] = True
        else:
            session.execute(statement, params)
        return
    for table, rows in queued.items():
        session.execute(sa.insert(table), rows)


@functools.lru_cache(maxsize=64)
def _one_statement(shape: tuple[tuple[sa.Table, tuple[str, ...]], ...]) -> sa.Insert:
    """`WITH t0 AS (INSERT INTO a ...), ... INSERT INTO z ...`: one row into each table."""
    *first, last = (
        sa.insert(table).values({column: sa.bindparam(f"p{t}_{column}", type_=table.c[column].type)
                                 for column in columns})
        for t, (table, columns) in enumerate(shape)
    )
    return last.add_cte(*(insert.cte(f"t{t}") for t, insert in enumerate(first)))


def _execute_alone(engine: Engine, statement: sa.Insert, params: dict[str, Any]) -> None:
    """Run `statement` as a transaction of its own (autocommit), on a pooled connection's driver.

    SQLAlchemy's path for one statement (session, connection, execution context, result, the pool's
    reset) cost as much of a model create's CPU as the statement itself: here only the compiled SQL and
    the columns' bind processors are SQLAlchemy's. Errors reach the caller as SQLAlchemy's exceptions
    (IntegrityError, OperationalError ...), and a connection found dead takes the pool with it.
    """
    sql, processors = _compiled(statement, engine.dialect)
    values = {name: processors[name](value) if name in processors else value for name, value in params.items()}
    dbapi_error = engine.dialect.loaded_dbapi.Error
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    try:
        driver.autocommit = True
        driver.execute(sql, values).close()
    except dbapi_error as exc:
        lost = engine.dialect.is_disconnect(exc, driver, None)
        if lost:
            # As SQLAlchemy does on a lost connection: its pooled siblings most likely died with it
            # (a database restart), so the whole pool is replaced rather than failing a request each.
            pooled.invalidate(exc)
            engine.dispose()
        raise sa.exc.DBAPIError.instance(sql, values, exc, dbapi_error, connection_invalidated=lost) from exc
    finally:
        if pooled.is_valid:
            try:
                driver.autocommit = False  # as the pool's other users expect it
            except dbapi_error as exc:
                pooled.invalidate(exc)  # never back into the pool in autocommit
        pooled.close()


@functools.lru_cache(maxsize=64)
def _compiled(statement: sa.Insert, dialect: Dialect) -> tuple[str, dict[str, Callable[[Any], Any]]]:
    """The statement's SQL for `dialect` and, by parameter name, the processors its values need (JSON ...)."""
    compiled = statement.compile(dialect=dialect)
    processors = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    return compiled.string, processors


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Call `callback()` once `session`'s current transaction commits; never if it rolls back or closes first.

    For what must wait until the change is in the database for all to see, such as a Celery task or a
    cache invalidation. Callbacks run in the order they were registered, once, after the outer
    transaction's commit (a savepoint's release runs none; its rollback drops none). One that raises
    is logged and the others still run: the change is committed, and its caller must not be told otherwise.
    """
    transaction_info(session).setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    kept = session.info.get(_TRANSACTION)
    # Also called for a savepoint's release, which commits nothing yet.
    if not kept or _AFTER_COMMIT not in kept or session.in_nested_transaction():
        return
    for callback in kept.pop(_AFTER_COMMIT):
        try:
            callback()
        except Exception:
            log.exception("committed, but %r failed after the commit", callback)


@event.listens_for(Session, "after_begin")
def _touched(session: Session, transaction: SessionTransaction, connection: sa.Connection) -> None:
    kept = session.info.setdefault(_TRANSACTION, {})
    if kept.get(_WENT_ALONE):
        raise RuntimeError("this transaction's queued rows already committed by themselves "
                           "(insert_queued(alone=True)): nothing may run in it after them")
    kept[_TOUCHED] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_transaction(session: Session, transaction: SessionTransaction) -> None:
    # A committed transaction took its rows in before_commit and ran its callbacks in after_commit; one
    # that rolled back or was closed drops them. A savepoint ending is not the end of its transaction.
    if transaction.parent is None:
        session.info.pop(_TRANSACTION, None)


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
