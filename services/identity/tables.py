"""Identity's tables: users and their API keys. Other services read them only through the credentials
identity supplies to authentication (services.identity.credentials)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, Timestamps, UUIDPrimaryKey, utcnow


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(sa.String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(32))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # Rises when the user is deactivated or their role or password changes: their tokens issued before
    # (which carry the generation they were issued in) are refused from then on (shared.auth).
    token_generation: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class ApiKey(UUIDPrimaryKey, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(sa.String(255))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[str] = mapped_column(sa.String(32))
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    owner_name: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
