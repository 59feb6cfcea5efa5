"""One service asking another over its HTTP API: over the network when the other has a URL, else
through WSGI to the current Flask app (the all-in-one composition of `make run` and the tests: the
same HTTP semantics, no socket)."""

from __future__ import annotations

import contextvars
import json
import urllib.error
import urllib.request
from typing import Any, Callable

from flask import Flask

from shared.errors import DomainError

TIMEOUT_SECONDS = 10

# (path, headers, JSON body to POST or None to GET) -> (status, JSON body or None)
Fetch = Callable[..., tuple[int, Any]]


class ServiceUnavailable(DomainError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


def over_http(base_url: str, *, timeout: float = TIMEOUT_SECONDS) -> Fetch:
    def fetch(path: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
        headers = {**headers, "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        call = urllib.request.Request(base_url.rstrip("/") + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(call, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise ServiceUnavailable(f"{base_url} did not answer: {exc}.") from exc

    return fetch


def in_process(app: Flask) -> Fetch:
    def fetch(path: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
        client = app.test_client()
        call = (lambda: client.get(path, headers=headers)) if body is None else \
            (lambda: client.post(path, headers=headers, json=body))
        # An empty context: the nested request must not share (and close) the caller's `g`, its
        # database session or its actor, which a nested request in the same context would.
        response = contextvars.Context().run(call)
        return response.status_code, response.get_json(silent=True)

    return fetch


def fetcher(base_url: str, app: Flask) -> Fetch:
    """Over the network to `base_url`, or in process to `app` when it is empty."""
    return over_http(base_url) if base_url else in_process(app)
