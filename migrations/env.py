"""Alembic environment: the one source of schema for every service's tables.

The database URL comes from `-x url=...`, else `MODELYARD_DATABASE_URL`, else the embedded default.
"""

from alembic import context

from shared.config import load_settings
from shared.db import Base, make_engine
from shared.schema import import_all_tables

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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
