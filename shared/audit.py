"""The audit log: one row per write, sealed into a hash chain where each row carries the hash of
the one before.

`record` runs inside the write's own transaction, so a rejected or rolled-back request leaves no
row. `seal` then appends committed rows to the chain, in order, a batch at a time: the relay process
(and `make run`'s web process) seals continuously, and `verify_chain` seals before it checks. Sealing
after commit, rather than inside every write, keeps writes from queueing behind one lock for the
length of a commit (a disk flush, ~3.5 ms here, which capped the whole platform at ~290 writes/s).
A row is protected once sealed, about a second after its write. `verify_chain` recomputes every
hash: an altered, inserted or removed sealed row breaks the chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.auth import Actor
from shared.db import Base, Database, JSONType, queue_insert, utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SYSTEM_ACTOR = "system"
REQUEST_ID_LENGTH = 128
# Any constant works; it names the one lock that serialises sealers on Postgres.
_CHAIN_LOCK_KEY = 0x6D79_6175
SEAL_BATCH = 1000
# A row records a change that was made (allowed), or a request refused for its credentials or role (denied).
ALLOWED, DENIED = "allowed", "denied"
OUTCOMES = (ALLOWED, DENIED)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(sa.String(64))
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(64))
    resource_type: Mapped[str] = mapped_column(sa.String(64))
    resource_id: Mapped[str] = mapped_column(sa.String(255))
    request_id: Mapped[str] = mapped_column(sa.String(REQUEST_ID_LENGTH))
    before: Mapped[dict | None] = mapped_column(JSONType)
    after: Mapped[dict | None] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(sa.String(16), default=ALLOWED, server_default=ALLOWED)
    # Set by `seal`: the row's place in the chain, the hash before it, and its own.
    chain_position: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                                       unique=True)
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64))
    hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)

    __table_args__ = (
        sa.Index("ix_audit_log_resource", "resource_type", "resource_id"),
        sa.Index("ix_audit_log_actor", "actor"),
        # The sealer's only query: unsealed rows in order.
        sa.Index("ix_audit_log_unsealed", "seq", postgresql_where=sa.text("chain_position IS NULL"),
                 sqlite_where=sa.text("chain_position IS NULL")),
        # Refusals are few among many writes: `?outcome=denied` finds them without walking the log.
        sa.Index("ix_audit_log_denied", "seq", postgresql_where=sa.text("outcome = 'denied'"),
                 sqlite_where=sa.text("outcome = 'denied'")),
    )


_LOG = AuditEntry.__table__
# What the chain hashes of a row, besides the hash before it (`_digest` reads them by name).
_CONTENT = (_LOG.c.at, _LOG.c.actor_id, _LOG.c.actor, _LOG.c.action, _LOG.c.resource_type, _LOG.c.resource_id,
            _LOG.c.request_id, _LOG.c.before, _LOG.c.after, _LOG.c.outcome)


def _digest(prev_hash: str, entry: sa.Row) -> str:
    # Sealed chains hold these hashes: any change to this function's output breaks every one of them.
    at = entry.at.astimezone(timezone.utc).replace(tzinfo=None) if entry.at.tzinfo else entry.at
    content = {
        "at": at.isoformat(timespec="microseconds"),  # SQLite hands back naive UTC times
        "actor_id": entry.actor_id,
        "actor": entry.actor,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "request_id": entry.request_id,
        "before": entry.before,
        "after": entry.after,
    }
    if entry.outcome != ALLOWED:
        # Only when it is not the default: rows sealed before outcomes existed keep their hashes.
        content["outcome"] = entry.outcome
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def record(
    session: Session,
    *,
    actor_id: str | None,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: Any,
    request_id: str,
    before: dict | None = None,
    after: dict | None = None,
    outcome: str = ALLOWED,
) -> None:
    """Write one audit row in the caller's transaction; `seal` adds it to the chain once committed."""
    # Not an ORM object: every write pays for this row, and the unit of work's bookkeeping cost more
    # than the insert itself. Inserted with the write's event, in one statement (shared.db.queue_insert).
    queue_insert(session, AuditEntry.__table__, dict(
        at=utcnow(),
        actor_id=actor_id,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        # The id may come from a client's X-Request-ID header: an over-long one must not fail the write.
        request_id=request_id[:REQUEST_ID_LENGTH],
        before=_jsonable(before),
        after=_jsonable(after),
        outcome=outcome,
    ))


def seal(session: Session, *, batch: int = SEAL_BATCH) -> int:
    """Append committed, unsealed rows to the chain in the order they were written; returns how many.

    A row whose transaction commits after a later-numbered one was sealed simply joins the chain in
    a later batch: the chain's order is the order of sealing.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK_KEY)))
    else:
        # SQLite has no advisory locks: a first write takes its one write lock before the head is read.
        session.execute(sa.update(_LOG).where(sa.false()).values(seq=_LOG.c.seq))
    head = session.execute(sa.select(_LOG.c.chain_position, _LOG.c.hash)
                           .where(_LOG.c.chain_position.is_not(None))
                           .order_by(_LOG.c.chain_position.desc()).limit(1)).first()
    position, prev_hash = (head.chain_position, head.hash) if head else (0, GENESIS)
    # Core rows of only what the digest reads: the sealer touches every row once, and ORM objects
    # (and the unit of work's UPDATE per row) cost several times the hashing.
    rows = session.execute(sa.select(_LOG.c.seq, *_CONTENT).where(_LOG.c.chain_position.is_(None))
                           .order_by(_LOG.c.seq).limit(batch)).all()
    chain = []
    for row in rows:
        position += 1
        digest = _digest(prev_hash, row)
        chain.append((row.seq, position, prev_hash, digest))
        prev_hash = digest
    if chain:
        _link(session, chain, postgres)
    return len(rows)


# Postgres: the whole batch in one UPDATE, its values passed as four arrays.
_LINK = sa.func.unnest(
    sa.bindparam("seqs", type_=postgresql.ARRAY(sa.BigInteger)),
    sa.bindparam("positions", type_=postgresql.ARRAY(sa.BigInteger)),
    sa.bindparam("prev_hashes", type_=postgresql.ARRAY(sa.String)),
    sa.bindparam("hashes", type_=postgresql.ARRAY(sa.String)),
).table_valued("seq", "position", "prev_hash", "hash").render_derived(name="link")
_SET_LINKS = (sa.update(_LOG).where(_LOG.c.seq == _LINK.c.seq)
              .values(chain_position=_LINK.c.position, prev_hash=_LINK.c.prev_hash, hash=_LINK.c.hash))
# SQLite runs in-process, so a statement per row costs no round trip: an executemany of one UPDATE.
_SET_LINK = sa.update(_LOG).where(_LOG.c.seq == sa.bindparam("b_seq"))


def _link(session: Session, chain: list[tuple[int, int, str, str]], postgres: bool) -> None:
    """Store each row's place in the chain, given as (seq, chain_position, prev_hash, hash)."""
    if postgres:
        seqs, positions, prev_hashes, hashes = (list(column) for column in zip(*chain))
        session.execute(_SET_LINKS, {"seqs": seqs, "positions": positions, "prev_hashes": prev_hashes,
                                     "hashes": hashes})
    else:
        session.execute(_SET_LINK, [{"b_seq": seq, "chain_position": position, "prev_hash": prev_hash, "hash": digest}
                                    for seq, position, prev_hash, digest in chain])


def seal_forever(db: Database, stop: threading.Event, interval: float = 1.0) -> None:
    """Seal new rows every `interval` seconds until `stop` is set (a thread of a long-running process)."""
    while not stop.is_set():
        try:
            with db.transaction() as session:
                sealed = seal(session)
        except Exception:  # a database outage must not end the sealer; the rows wait, unsealed
            log.exception("sealing the audit chain failed; will retry")
            sealed = 0
        if sealed < SEAL_BATCH:
            stop.wait(interval)


def record_change(
    session: Session,
    *,
    actor: Actor | None,
    action: str,
    resource_type: str,
    resource_id: Any,
    request_id: str,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    """`record` for a change made by `actor`; None means the platform itself (e.g. at start-up)."""
    record(
        session,
        actor_id=actor.id if actor else None,
        actor=actor.name if actor else SYSTEM_ACTOR,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=request_id,
        before=before,
        after=after,
    )


def _jsonable(summary: dict | None) -> dict | None:
    return None if summary is None else json.loads(json.dumps(summary, default=str))


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str | None = None


def _in_order(session: Session, batch: int = 5000) -> Iterator[sa.Row]:
    last = 0
    while True:
        rows = session.execute(
            sa.select(_LOG.c.seq, _LOG.c.chain_position, _LOG.c.prev_hash, _LOG.c.hash, *_CONTENT)
            .where(_LOG.c.chain_position > last).order_by(_LOG.c.chain_position).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].chain_position


def verify_chain(session: Session) -> ChainReport:
    """Seal what is pending, then recompute the chain from its first row; report the first that does not fit."""
    seal(session, batch=2**62)
    prev_hash = GENESIS
    count = 0
    for entry in _in_order(session):
        if entry.chain_position != count + 1 or entry.prev_hash != prev_hash:
            return ChainReport(False, count, entry.seq, "a row before this one was altered or removed")
        if _digest(prev_hash, entry) != entry.hash:
            return ChainReport(False, count, entry.seq, "this row's content was altered")
        prev_hash = entry.hash
        count += 1
    return ChainReport(True, count)
