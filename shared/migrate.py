"""Every table module, imported once so Alembic and `alembic check` see the whole schema."""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config

TABLE_MODULES = (
    "shared.audit",
    "shared.events.outbox",
    "shared.events.consumer",
    "shared.idempotency",
    "services.identity.tables",
    "services.registry.tables",
    "services.training.tables",
)

ROOT = Path(__file__).resolve().parent.parent


def import_all_tables() -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    return config


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest revision."""
    command.upgrade(alembic_config(url), "head")
