"""Alembic environment: the one source of schema for every service's tables.

The database URL comes from `-x url=...`, else `MODELYARD_DATABASE_URL`, else the embedded default.
"""

from alembic import context

from launch.catalog import import_all_tables
from shared.config import load_settings
from shared.db import Base, make_engine

import_all_tables()
target_metadata = Base.metadata


def _url() -> str:
    return (
        context.config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or load_settings().database_url
    )


def run_migrations_online() -> None:
    connectable = context.config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    if connection.dialect.name == "sqlite":
        # A batch migration rebuilds a table (copy, drop, rename); with foreign keys on, dropping the old
        # table would cascade-delete every row that refers to it. Checked again once the schema is whole.
        # (The pragma is a no-op inside a transaction, so it is set before one begins.)
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # ends what SQLAlchemy began for the pragma, so that Alembic's transaction commits
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")


run_migrations_online()
