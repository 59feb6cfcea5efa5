"""Identity's tables. (API keys live in shared.auth: every service reads them; only identity writes.)"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, Timestamps, UUIDPrimaryKey


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
