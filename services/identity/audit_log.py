"""The audit log's read side: filtered listing, newest first, and the chain check."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.audit import AuditEntry, ChainReport, verify_chain
from shared.pagination import Page, Sorting, paginate

AUDIT_SORTING = Sorting(columns={"seq": AuditEntry.seq}, tiebreaker=AuditEntry.seq, default="-seq")


def list_audit_entries(*, session: Session, limit: int, cursor: str | None = None, sort: str | None = None,
                       resource_type: str | None = None, resource_id: str | None = None,
                       actor: str | None = None, action: str | None = None, outcome: str | None = None) -> Page:
    """A page of audit rows matching every given filter; `actor` matches a name or a user id."""
    statement = sa.select(AuditEntry)
    if resource_type is not None:
        statement = statement.where(AuditEntry.resource_type == resource_type)
    if resource_id is not None:
        statement = statement.where(AuditEntry.resource_id == resource_id)
    if actor is not None:
        statement = statement.where(sa.or_(AuditEntry.actor == actor, AuditEntry.actor_id == actor))
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if outcome is not None:
        statement = statement.where(AuditEntry.outcome == outcome)
    return paginate(session, statement, sorting=AUDIT_SORTING, limit=limit, cursor=cursor, sort=sort)


def verify_audit_chain(*, session: Session) -> ChainReport:
    """Recompute the hash chain over every row; the first row that does not fit is reported."""
    return verify_chain(session)
