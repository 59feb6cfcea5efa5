"""Identity service: tokens, users and roles, API keys, and the audit log's read side."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from services.identity.api import register_routes
from shared.config import Settings
from shared.web import Runtime, create_service_app


def register(api: Api, rt: Runtime) -> None:
    """Mount identity's routes (the all-in-one composition calls this too)."""
    register_routes(api, rt)


def create_app(settings: Settings | dict | None = None) -> Flask:
    return create_service_app("identity", [register], settings)
