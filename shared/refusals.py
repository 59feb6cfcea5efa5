"""Refused requests leave a trace: a 403, or a 401 whose credential names a known user or key, is
written to the audit log as a `denied` row.

What a denied row holds: the caller (the user, or the key's owner); `action`, the HTTP method and the
endpoint that was refused (`DELETE registry_models.ModelItem`), since no change was made to name;
resource type `path` with the request's path as the resource; the request id; and under `after` the
status and the reason given to the caller. A 401 that names no one (no credential, garbage, an unknown
user or key, an expired token) writes nothing: it tells an operator nothing about an account.

The request's own transaction is rolled back first and the row written in a transaction of its own.
Only refusals pay for it: an allowed request never reaches these handlers. A row that cannot be
written is logged, and the caller still gets the 401 or 403, never a 500.
"""

from __future__ import annotations

import logging

from flask import Flask, g, request

from shared.audit import DENIED, record
from shared.auth import KnownCallerRefused
from shared.db import Database
from shared.errors import DomainError, Forbidden, problem

log = logging.getLogger(__name__)

ACTION_LENGTH, RESOURCE_LENGTH = 64, 255


def _write_denial(db: Database, exc: DomainError, *, actor_id: str | None, actor: str) -> None:
    request_session = g.pop("db_session", None)
    if request_session is not None:
        # Whatever the refused request did is undone before the row is written (and, on SQLite, its
        # read transaction no longer holds the lock the row's write needs).
        request_session.rollback()
        request_session.close()
    try:
        with db.transaction() as session:
            record(session, actor_id=actor_id, actor=actor,
                   action=f"{request.method} {request.endpoint or 'unmatched'}"[:ACTION_LENGTH],
                   resource_type="path", resource_id=request.path[:RESOURCE_LENGTH],
                   request_id=g.get("request_id") or "-", after={"status": exc.status, "detail": exc.detail},
                   outcome=DENIED)
    except Exception:  # the refusal stands whatever happens to its record
        log.warning("could not audit the refused %s %s of %s", request.method, request.path, actor, exc_info=True)


def install_refusal_audit(app: Flask, db: Database) -> None:
    """Answer refusals as every DomainError is answered, after auditing those that name a caller."""

    @app.errorhandler(KnownCallerRefused)
    def _known_caller(exc: KnownCallerRefused):
        _write_denial(db, exc, actor_id=exc.actor_id, actor=exc.actor)
        return problem(exc.status, exc.title, exc.detail, slug=exc.slug)

    @app.errorhandler(Forbidden)
    def _forbidden(exc: Forbidden):
        actor = g.get("actor")
        if actor is not None:
            _write_denial(db, exc, actor_id=actor.id, actor=actor.name)
        return problem(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors)
