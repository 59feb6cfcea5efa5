"""Alembic, driven from code: `migrate(url)` brings a database to the newest revision.

The migrations' environment (migrations/env.py) imports every service's table modules through the
catalog (launch.catalog.import_all_tables), so autogenerate and `alembic check` see the whole schema.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    return config


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest revision."""
    command.upgrade(alembic_config(url), "head")
