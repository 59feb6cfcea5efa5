"""The audit log: one row per write, each carrying the hash of the one before (a hash chain).

`record` runs inside the write's own transaction, so a rejected or rolled-back request leaves no
row. `verify_chain` recomputes every hash: an altered, inserted or removed row breaks the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.auth import Actor
from shared.db import Base, JSONType, utcnow

GENESIS = "0" * 64
SYSTEM_ACTOR = "system"
REQUEST_ID_LENGTH = 128
# Any constant works; it names the one lock that serialises appends to the chain on Postgres.
_CHAIN_LOCK_KEY = 0x6D79_6175
_PENDING = "modelyard.audit.pending"


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
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)

    __table_args__ = (
        sa.Index("ix_audit_log_resource", "resource_type", "resource_id"),
        sa.Index("ix_audit_log_actor", "actor"),
    )


def _digest(prev_hash: str, entry: AuditEntry) -> str:
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
) -> AuditEntry:
    """Append one audit row to the chain, in the caller's transaction.

    The row joins the chain when the transaction commits (see `_append_to_chain`), so the lock that
    orders the chain is held for the commit alone, not for the whole request.
    """
    entry = AuditEntry(
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
    )
    pending = session.info.setdefault(_PENDING, [])
    if not pending and not event.contains(session, "before_commit", _append_to_chain):
        event.listen(session, "before_commit", _append_to_chain)
        event.listen(session, "after_rollback", _forget_pending)
    pending.append(entry)
    return entry


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _append_to_chain(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Held until commit: the chain's order is the commit order, with no forks.
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK_KEY)))
    prev_hash = session.scalar(sa.select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)) or GENESIS
    for entry in pending:
        entry.prev_hash = prev_hash
        entry.hash = prev_hash = _digest(prev_hash, entry)
    session.add_all(pending)


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
) -> AuditEntry:
    """`record` for a change made by `actor`; None means the platform itself (e.g. at start-up)."""
    return record(
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


def _in_order(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session) -> ChainReport:
    """Recompute the chain from the first row; report the first row that does not fit."""
    prev_hash = GENESIS
    count = 0
    for entry in _in_order(session):
        if entry.prev_hash != prev_hash:
            return ChainReport(False, count, entry.seq, "a row before this one was altered or removed")
        if _digest(prev_hash, entry) != entry.hash:
            return ChainReport(False, count, entry.seq, "this row's content was altered")
        prev_hash = entry.hash
        count += 1
    return ChainReport(True, count)
