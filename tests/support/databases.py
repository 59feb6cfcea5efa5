"""Throwaway databases for a test run, and emptying one between tests."""

from __future__ import annotations

import time

import sqlalchemy as sa


def drop_database(admin: sa.Engine, name: str) -> None:
    """Drop `name` through `admin` (an AUTOCOMMIT engine on another database), ending its sessions first."""
    with admin.connect() as conn:
        conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
        ), {"name": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


def empty_tables(engine: sa.Engine, attempts: int = 5) -> None:
    """Delete every row of every table but Alembic's, on Postgres or SQLite.

    A worker or consumer of the test's module may still be finishing a transaction, and Postgres
    resolves TRUNCATE's lock wait against it as a deadlock: it is tried again.
    """
    for attempt in range(attempts):
        try:
            return _empty(engine)
        except sa.exc.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def _empty(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        tables = [name for name in sa.inspect(conn).get_table_names() if name != "alembic_version"]
        if not tables:
            return
        if conn.dialect.name == "postgresql":
            # TRUNCATE costs per table named (~150 ms for all of them, at every test): name only those that hold
            # rows, found in one query.
            holding = conn.execute(sa.text(" UNION ALL ".join(
                f"SELECT '{t}' WHERE EXISTS (SELECT FROM \"{t}\")" for t in tables))).scalars().all()
            if holding:
                conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in holding) + " RESTART IDENTITY CASCADE"))
            return
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # rows go in any order; checked at commit
        for table in tables:
            conn.exec_driver_sql(f'DELETE FROM "{table}"')
