"""Asks the registry, over its HTTP API, about the model and dataset a training request names.

The training service never imports the registry (a service owns its tables; others ask its API).
The caller's own credentials are forwarded, so the registry applies the caller's rights. With
`registry_url` set the request goes over the network; left empty (the all-in-one composition of
`make run` and the tests) it goes through WSGI to the current Flask app: same HTTP semantics, no socket.
"""

from __future__ import annotations

import contextvars
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, current_app, request

from shared.errors import DomainError, Forbidden, NotFound, Unauthorized, ValidationFailed

FORWARDED_HEADERS = ("Authorization", "X-API-Key", "X-Request-ID")
TIMEOUT_SECONDS = 10

Fetch = Callable[[str, dict[str, str]], tuple[int, Any]]


class RegistryUnavailable(DomainError):
    status, title, slug = 503, "Registry unavailable", "registry-unavailable"


def _over_http(base_url: str) -> Fetch:
    def fetch(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        call = urllib.request.Request(base_url.rstrip("/") + path, headers={**headers, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(call, timeout=TIMEOUT_SECONDS) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise RegistryUnavailable(f"The registry at {base_url} did not answer: {exc}.") from exc

    return fetch


def _in_process(app: Flask) -> Fetch:
    def fetch(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        # An empty context: the nested request must not share (and close) the caller's `g`, its
        # database session or its actor, which a nested request in the same context would.
        response = contextvars.Context().run(lambda: app.test_client().get(path, headers=headers))
        return response.status_code, response.get_json(silent=True)

    return fetch


@dataclass
class RegistryClient:
    fetch: Fetch
    headers: dict[str, str]

    @classmethod
    def for_request(cls, registry_url: str) -> "RegistryClient":
        """A client speaking for the current request's caller."""
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        fetch = _over_http(registry_url) if registry_url else _in_process(current_app._get_current_object())
        return cls(fetch=fetch, headers=headers)

    def _get(self, path: str) -> tuple[int, Any]:
        status, body = self.fetch(path, self.headers)
        if status == 401:
            raise Unauthorized((body or {}).get("detail", "The registry refused the credentials."))
        if status == 403:
            raise Forbidden((body or {}).get("detail", "The registry refused this caller."))
        if status >= 500 or (status != 404 and status >= 300):
            raise RegistryUnavailable(f"The registry answered {status} for {path}.")
        return status, body

    def model(self, model_ref: str) -> dict[str, Any]:
        """The registry's representation of the model with this id or name (its `id` names it from then
        on); NotFound if there is none."""
        status, body = self._get("/api/v1/models/" + urllib.parse.quote(model_ref, safe=""))
        if status == 404:
            raise NotFound(f"No model has the id or name {model_ref!r}.")
        return body

    def dataset(self, dataset_id: uuid.UUID) -> dict[str, Any]:
        """The dataset with its schema; a missing one is a 422 naming `dataset_id` (a field of the body)."""
        status, body = self._get(f"/api/v1/datasets/{dataset_id}")
        if status == 404:
            raise ValidationFailed(f"No dataset with id {dataset_id}.", errors={"dataset_id": ["No such dataset."]})
        return body
