"""The all-in-one composition: every service's routes in one process, as `make run` serves them."""

from __future__ import annotations

from flask import Flask

from services import identity, registry, training
from shared.config import Settings
from shared.web import create_service_app


def create_app(settings: Settings | dict | None = None) -> Flask:
    return create_service_app("modelyard", [identity.register, registry.register, training.register], settings)
