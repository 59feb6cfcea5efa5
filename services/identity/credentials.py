"""What every service's authentication reads from identity's tables (shared.auth.Credentials).

The composition root (launch/) hands this to every app it builds, so a service checks keys and token
generations on its own requests without a round trip to identity, and without SQL of its own on
identity's tables. Only identity's code touches them.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.identity.tables import ApiKey, User
from shared.auth import StoredKey
from shared.db import utcnow

_KEY_COLUMNS = (ApiKey.id, ApiKey.key_hash, ApiKey.role, ApiKey.owner_id, ApiKey.owner_name, ApiKey.expires_at,
                ApiKey.revoked_at, ApiKey.last_used_at)


class IdentityCredentials:
    def stored_key(self, session: Session, prefix: str) -> StoredKey | None:
        row = session.execute(sa.select(*_KEY_COLUMNS).where(ApiKey.prefix == prefix)).one_or_none()
        return StoredKey(*row) if row is not None else None

    def raised_generations(self, session: Session) -> dict[str, int]:
        rows = session.execute(sa.select(User.id, User.token_generation).where(User.token_generation > 0))
        return {str(user_id): generation for user_id, generation in rows}

    def record_key_use(self, session: Session, key_id: uuid.UUID) -> None:
        session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


credentials = IdentityCredentials()
