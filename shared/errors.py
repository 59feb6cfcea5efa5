"""One error hierarchy for every service, and its one mapping to problem+json (RFC 9457).

Use cases raise these; they never see HTTP. `install_error_handlers` turns them (and werkzeug's,
and validation errors from flask-smorest/webargs) into `application/problem+json` answers.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from marshmallow import Schema, fields
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """A request the domain refuses. `status` is the HTTP status it maps to."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str, *, errors: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(DomainError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(DomainError):
    status, title, slug = 409, "Conflict", "conflict"


class InvalidTransition(Conflict):
    title, slug = "Invalid state transition", "invalid-transition"


class ValidationFailed(DomainError):
    status, title, slug = 422, "Validation failed", "validation-failed"


class Unauthorized(DomainError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(DomainError):
    status, title, slug = 403, "Forbidden", "forbidden"


class PayloadTooLarge(DomainError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(DomainError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class TooManyRequests(DomainError):
    """Throttled: `retry_after` is how many seconds to wait, sent as `Retry-After`."""

    status, title, slug = 429, "Too many requests", "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


class IntegrityFailure(DomainError):
    """Stored bytes do not match their recorded digest or fail authentication: never served."""

    status, title, slug = 500, "Artifact integrity check failed", "integrity-error"


class ProblemSchema(Schema):
    """Every error answer, as `problem` writes it; it documents the error responses in the OpenAPI document."""

    type = fields.String(metadata={"description": "A URI naming the kind of problem."})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String(allow_none=True, metadata={"description": "The request path."})
    errors = fields.Dict(metadata={"description": "Invalid input: field name -> messages."})


def problem(status: int, title: str, detail: str, *, slug: str, errors: Any = None) -> Response:
    body: dict[str, Any] = {
        "type": f"https://modelyard.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path if request else None,
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="modelyard"'
    return response


def _slugify(title: str) -> str:
    return title.lower().replace(" ", "-").replace("'", "")


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):
        if exc.status >= 500:
            log.error("%s: %s", exc.title, exc.detail)
        response = problem(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        errors = None
        detail = exc.description or exc.name
        # webargs/flask-smorest put field errors under exc.data["messages"]: {location: {field: [msg]}}.
        data = getattr(exc, "data", None)
        if isinstance(data, dict) and "messages" in data:
            messages = data["messages"]
            errors = {}
            for location_errors in messages.values():
                if isinstance(location_errors, dict):
                    errors.update(location_errors)
            detail = "The request has invalid fields: " + ", ".join(sorted(map(str, errors))) if errors else detail
        if status == 422 and errors is None:
            detail = detail or "Unprocessable request"
        return problem(status, exc.name, detail, slug=_slugify(exc.name), errors=errors)

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError):
        # The connection was lost (a restart, the network) or the database gave up on the transaction
        # (a deadlock): it rolled back, and a retry may well succeed.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc.orig)
        response = problem(503, "Service unavailable",
                           "The database could not complete the request; nothing was changed. Retry.",
                           slug="database-unavailable")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "An unexpected error occurred; it has been logged.",
                       slug="internal-error")
