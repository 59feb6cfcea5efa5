"""Every JSON answer a test receives must be JSON that any parser accepts.

Python's json writes NaN and Infinity, and reads them back, so a test reading `response.json` would
never notice an answer that strict clients (browsers' JSON.parse, Go, Postgres jsonb) refuse.
"""

from __future__ import annotations

import json

from werkzeug.test import TestResponse

# Answers that have no body whatever their Content-Type says.
NO_CONTENT = frozenset({204, 304})


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def is_json(mimetype: str | None) -> bool:
    return mimetype == "application/json" or (mimetype or "").endswith("+json")


def check_strict_json(response: TestResponse) -> None:
    """AssertionError naming the request if a JSON answer holds NaN, Infinity or is not JSON at all."""
    if not is_json(response.mimetype) or response.status_code in NO_CONTENT:
        return
    try:
        json.loads(response.get_data(), parse_constant=_refuse_constant)
    except ValueError as exc:
        request = response.request
        raise AssertionError(f"{request.method} {request.path} answered invalid JSON: {exc}") from None
