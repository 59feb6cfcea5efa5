"""Use cases for API keys: create (shown once, stored hashed), list, revoke."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.audit import record_change
from services.identity.tables import ApiKey
from shared.auth import Actor, hash_key, new_api_key
from shared.db import utcnow
from shared.errors import Forbidden, NotFound
from shared.pagination import Page, Sorting, paginate

API_KEY_SORTING = Sorting(
    columns={"created_at": ApiKey.created_at, "name": ApiKey.name},
    tiebreaker=ApiKey.id,
    default="-created_at",
)


@dataclass(frozen=True)
class NewApiKey:
    """A key just made: its stored row and the plaintext key, which exists only in this response."""

    record: ApiKey
    key: str

    def __getattr__(self, name: str):
        return getattr(self.record, name)


def key_summary(row: ApiKey) -> dict:
    """What the audit log keeps of a key: never the key or its hash."""
    return {
        "name": row.name, "role": row.role, "prefix": row.prefix, "owner": row.owner_name,
        "expires_at": row.expires_at, "revoked_at": row.revoked_at,
    }


def create_api_key(*, session: Session, actor: Actor, request_id: str, name: str, role: str,
                   expires_in_days: int | None = None) -> NewApiKey:
    """A new key for the caller with at most the caller's own role; 403 above it."""
    if not actor.has_role(role):
        raise Forbidden(f"A key cannot have a role above your own ({actor.role}); asked for {role}.")
    key, prefix = new_api_key()
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
        role=role,
        owner_id=uuid.UUID(actor.id),
        owner_name=actor.name,
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    session.flush()
    record_change(session, actor=actor, action="api_key.created", resource_type="api_key", resource_id=row.id,
                  request_id=request_id, after=key_summary(row))
    return NewApiKey(record=row, key=key)


def list_api_keys(*, session: Session, actor: Actor, limit: int, cursor: str | None = None,
                  sort: str | None = None) -> Page:
    """The caller's keys, revoked ones included; an admin sees everyone's."""
    statement = sa.select(ApiKey)
    if not actor.has_role("admin"):
        statement = statement.where(ApiKey.owner_id == uuid.UUID(actor.id))
    return paginate(session, statement, sorting=API_KEY_SORTING, limit=limit, cursor=cursor, sort=sort)


def revoke_api_key(*, session: Session, actor: Actor, request_id: str, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key of the caller's (any key, for an admin); it is refused from the next request on.

    Someone else's key is reported as not found, so ids of other people's keys cannot be probed.
    Revoking a revoked key changes nothing and records nothing.
    """
    row = session.get(ApiKey, key_id)
    if row is None or (str(row.owner_id) != actor.id and not actor.has_role("admin")):
        raise NotFound(f"No API key with id {key_id}.")
    if row.revoked_at is None:
        before = key_summary(row)
        row.revoked_at = utcnow()
        session.flush()
        record_change(session, actor=actor, action="api_key.revoked", resource_type="api_key",
                      resource_id=row.id, request_id=request_id, before=before, after=key_summary(row))
    return row
