"""Asks the registry, over its HTTP API, about the models, versions and datasets a request names.

Training and deployment never import the registry (a service owns its tables; others ask its API).
The caller's own credentials are forwarded, so the registry applies the caller's rights. With
`registry_url` set the request goes over the network; left empty, in process (shared.service_client).
"""

from __future__ import annotations

import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from shared.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from shared.service_client import Fetch, ServiceUnavailable, fetcher

FORWARDED_HEADERS = ("Authorization", "X-API-Key", "X-Request-ID")


def forwarded_headers() -> dict[str, str]:
    """The current request's credentials and request id, to ask another service as its caller."""
    return {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}


class RegistryUnavailable(ServiceUnavailable):
    title, slug = "Registry unavailable", "registry-unavailable"


@dataclass
class RegistryClient:
    fetch: Fetch
    headers: dict[str, str]

    @classmethod
    def for_request(cls, registry_url: str) -> "RegistryClient":
        """A client speaking for the current request's caller."""
        return cls(fetch=fetcher(registry_url, current_app._get_current_object()), headers=forwarded_headers())

    def _get(self, path: str) -> tuple[int, Any]:
        try:
            status, body = self.fetch(path, self.headers)
        except ServiceUnavailable as exc:
            raise RegistryUnavailable(f"The registry is unavailable: {exc.detail}") from exc
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

    def version(self, model_id: str, ref: int | str) -> dict[str, Any] | None:
        """The model's version by number, or "latest"; None if there is none."""
        status, body = self._get(f"/api/v1/models/{model_id}/versions/{ref}")
        return None if status == 404 else body

    def alias(self, model_id: str, alias: str) -> dict[str, Any] | None:
        """The version an alias points at; None if the alias is not set."""
        status, body = self._get(f"/api/v1/models/{model_id}/aliases/{urllib.parse.quote(alias, safe='')}")
        return None if status == 404 else body

    def dataset(self, dataset_id: uuid.UUID) -> dict[str, Any]:
        """The dataset with its schema; a missing one is a 422 naming `dataset_id` (a field of the body)."""
        status, body = self._get(f"/api/v1/datasets/{dataset_id}")
        if status == 404:
            raise ValidationFailed(f"No dataset with id {dataset_id}.", errors={"dataset_id": ["No such dataset."]})
        return body
