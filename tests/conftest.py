"""Servers for the integration tests: real Postgres, RabbitMQ and Redis, each run isolated.

URLs come from `MODELYARD_TEST_*_URL`, else the standard ports on localhost. Each run gets its own
throwaway database, exchange name and Redis key prefix, so it never touches real data. If a server
cannot be reached the run stops and names it.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from shared.db import make_engine, normalise_url
from tests.support.databases import drop_database, empty_tables
from tests.support.settings import platform_settings
from tests.support.strict_answers import check_strict_json

RUN_ID = uuid.uuid4().hex[:10]

DEFAULTS = {
    "DATABASE": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "BROKER": "amqp://guest:guest@127.0.0.1:5672//",
    "REDIS": "redis://127.0.0.1:6379/0",
}


def server_url(kind: str) -> str:
    return os.environ.get(f"MODELYARD_TEST_{kind}_URL", DEFAULTS[kind])


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    missing = [f"{kind.lower()} at {server_url(kind)}" for kind in DEFAULTS if not _reachable(server_url(kind))]
    if missing:
        pytest.exit(
            "integration tests need real servers; unreachable: " + "; ".join(missing)
            + " (set MODELYARD_TEST_DATABASE_URL / _BROKER_URL / _REDIS_URL)",
            returncode=3,
        )
    return {kind: server_url(kind) for kind in DEFAULTS}


# Every test that touches the database runs on both: Postgres, and SQLite, the database of `make run`.
DATABASES = ("postgresql", "sqlite")


def pytest_generate_tests(metafunc):
    if "database_kind" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("postgres_only")
        metafunc.parametrize("database_kind", DATABASES[:1] if only else DATABASES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def database_kind(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(database_kind, servers, tmp_path_factory) -> str:
    """A fresh database of this kind for the run, built by the Alembic migrations, dropped at the end."""
    from shared.migrate import migrate

    if database_kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/modelyard.db"
        migrate(url)
        yield url
        return
    admin_url = normalise_url(servers["DATABASE"])
    name = f"modelyard_test_{RUN_ID}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    drop_database(admin, name)
    admin.dispose()


@pytest.fixture(scope="session")
def _truncate_engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_db(_truncate_engine):
    """Empty every table after the test, so tests never see each other's rows."""
    yield
    empty_tables(_truncate_engine)


@pytest.fixture
def settings_overrides(database_url, servers, tmp_path) -> dict:
    """Settings for a platform under test: real servers, this run's names, a temp artifact root."""
    return platform_settings(database_url, servers, tmp_path, RUN_ID)


@pytest.fixture
def make_app():
    """Build a service app (the all-in-one by default) whose database pool is closed after the test."""
    from launch.apps import create_app

    apps = []

    def make(settings, factory=create_app):
        app = factory(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["modelyard"].close()


@pytest.fixture(autouse=True)
def _json_answers_are_strict(monkeypatch):
    """Fail the test whose request gets an answer that is not strict JSON, at the request."""
    open_request = FlaskClient.open

    def open_checked(self, *args, **kwargs):
        response = open_request(self, *args, **kwargs)
        check_strict_json(response)
        return response

    monkeypatch.setattr(FlaskClient, "open", open_checked)
