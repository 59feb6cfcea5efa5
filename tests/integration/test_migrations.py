"""Alembic is the only source of schema: the migrations build exactly what the models describe."""

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import Base, make_engine
from shared.schema import alembic_config, import_all_tables, migrate

pytestmark = pytest.mark.integration


def _differences(url: str) -> list:
    import_all_tables()
    engine = make_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "render_as_batch": conn.dialect.name == "sqlite"})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


def test_models_and_migrations_agree_on_postgres(database_url):
    assert _differences(database_url) == []


def test_models_and_migrations_agree_on_the_embedded_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/modelyard.db"
    migrate(url)
    assert _differences(url) == []


def test_the_history_downgrades_to_nothing_and_back(tmp_path):
    url = f"sqlite:///{tmp_path}/roundtrip.db"
    migrate(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
    migrate(url)
