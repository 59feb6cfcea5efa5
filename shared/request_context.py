"""What a request carries: the process's runtime, the request's session and its id.

A module of its own so that auth, idempotency and the web edge can all use them without importing each
other (shared.web wires auth in; auth needs the runtime).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, g
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from shared.web import Runtime


def runtime() -> Runtime:
    return current_app.extensions["modelyard"]


def db_session() -> Session:
    """The request's session; committed once when the view returns, rolled back on error."""
    if "db_session" not in g:
        g.db_session = runtime().db.sessions()
    return g.db_session


def request_id() -> str:
    return g.get("request_id") or "-"
