"""`python -m launch.prepare [--create-database]`: make the directories, migrate, create the
first admin, then print the line that says how to log in.

`make run` and `make stack` run it as a child process before starting the platform, so their
supervisor, which lives as long as the platform, never imports Alembic, SQLAlchemy or the tables.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import sqlalchemy as sa

from services.identity.users import ensure_admin
from shared.config import Settings, load_settings
from shared.db import Database, normalise_url
from shared.migrate import migrate


def ensure_database(url: str) -> None:
    """Create the stack's database on first start (the server's `postgres` database must exist)."""
    target = sa.make_url(normalise_url(url))
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def prepare(settings: Settings) -> str:
    """Make the directories, migrate, create the first admin; returns the line that says how to log in."""
    for directory in (settings.var_dir, settings.artifact_root, settings.data_root):
        Path(directory).mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    db = Database(settings.database_url)
    password = settings.admin_password or secrets.token_urlsafe(12)
    with db.transaction() as session:
        _, created = ensure_admin(session=session, username=settings.admin_username, password=password)
    db.dispose()
    if not created:
        return f"Log in as {settings.admin_username!r} with the password set when it was created."
    if settings.admin_password:
        return f"Log in as {settings.admin_username!r} with the password in MODELYARD_ADMIN_PASSWORD."
    return f"Log in as {settings.admin_username!r}, password: {password}  (printed once; keep it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--create-database", action="store_true",
                        help="create the Postgres database first if it does not exist")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.create_database:
        ensure_database(settings.database_url)
    print(prepare(settings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
