"""Throwaway Postgres databases for a test run."""

from __future__ import annotations

import sqlalchemy as sa


def drop_database(admin: sa.Engine, name: str) -> None:
    """Drop `name` through `admin` (an AUTOCOMMIT engine on another database), ending its sessions first."""
    with admin.connect() as conn:
        conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
        ), {"name": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
