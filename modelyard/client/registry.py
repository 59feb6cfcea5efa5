"""The registry's resources: models, their versions and aliases, and datasets."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from modelyard.client.http import Transport
from modelyard.client.results import Dataset, DriftReport, Model, Performance, Version


def model_path(model: str) -> str:
    """/models/<id or exact name>: a name is URL-encoded as one path segment, as the server takes it."""
    return "/models/" + quote(str(model), safe="")


class Models:
    def __init__(self, http: Transport):
        self._http = http

    def create(self, name: str, *, type: str, framework: str = "scikit_learn", **fields: Any) -> Model:
        """Register a model; `fields` are the rest of the brief's example 1 (description, hyperparameters,
        features, target_variable, tags, metadata, sensitive_features)."""
        body = {"name": name, "type": type, "framework": framework, **fields}
        return Model.from_json(self._http.post("/models", body, idempotent_post=True))

    def get(self, model: str) -> Model:
        """A model by its id or its exact name."""
        return Model.from_json(self._http.get(model_path(model)))

    def list(self, *, q: str | None = None, type: str | None = None, framework: str | None = None,
             status: str | None = None, tag: str | None = None, sort: str | None = None) -> Iterator[Model]:
        """Every model matching the filters, newest first unless `sort` says otherwise."""
        for item in self._http.pages("/models", q=q, type=type, framework=framework, status=status, tag=tag,
                                     sort=sort):
            yield Model.from_json(item)

    def update(self, model: str, **changes: Any) -> Model:
        return Model.from_json(self._http.request("PATCH", model_path(model), json=changes).json())

    def archive(self, model: str) -> Model:
        # A second archive of an archived model is a 409 the caller sees, not a silent repeat: no retry.
        return Model.from_json(self._http.post(model_path(model) + "/archive"))

    def delete(self, model: str) -> None:
        """Remove the model with its versions and aliases (admin only)."""
        self._http.request("DELETE", model_path(model))

    def drift(self, model: str, *, hours: int | None = None, version: int | None = None,
              refresh: bool | None = None, correction: str | None = None) -> DriftReport:
        """The drift of the model's live (else latest) version's recent predictions from its training data."""
        return DriftReport.from_json(self._http.get(model_path(model) + "/drift", hours=hours, version=version,
                                                    refresh=refresh, correction=correction))

    def performance(self, model: str, days: int = 30, *, version: int | None = None,
                    granularity: str | None = None) -> Performance:
        return Performance.from_json(self._http.get(model_path(model) + "/performance", days=days,
                                                    version=version, granularity=granularity))


class Versions:
    def __init__(self, http: Transport):
        self._http = http

    def upload(self, model: str, path: str | os.PathLike, metadata: dict | None = None) -> Version:
        """Upload a model file as the model's next version, with its metadata (description, parameters,
        metrics, dataset_id, parent_version, code_version ...)."""
        path = Path(path)
        form = {"metadata": json.dumps(metadata)} if metadata else None
        answer = self._http.request("POST", model_path(model) + "/versions", data=form, idempotent_post=True,
                                    files=lambda: {"artifact": (path.name, path.open("rb"))})
        return Version.from_json(answer.json())

    def get(self, model: str, version: int | str = "latest") -> Version:
        """A version by its number, or `latest`."""
        return Version.from_json(self._http.get(f"{model_path(model)}/versions/{version}"))

    def list(self, model: str, *, sort: str | None = None) -> Iterator[Version]:
        for item in self._http.pages(model_path(model) + "/versions", sort=sort):
            yield Version.from_json(item)

    def download(self, model: str, version: int | str = "latest", to: str | os.PathLike = ".") -> Path:
        """Save the version's artifact into the directory `to` under the name the server gives it
        (`<model>-v<number>.<format>`), or to the file `to`; the path written."""
        answer = self._http.request("GET", f"{model_path(model)}/versions/{version}/artifact", stream=True)
        target = Path(to)
        if target.is_dir():
            target = target / _attachment_name(answer.headers.get("Content-Disposition", ""), version)
        with answer, target.open("wb") as out:
            for chunk in answer.iter_content(1 << 20):
                out.write(chunk)
        return target


class Aliases:
    def __init__(self, http: Transport):
        self._http = http

    def set(self, model: str, alias: str, version: int) -> Version:
        """Point `alias` (e.g. champion) at a version; the version it now names."""
        answer = self._http.request("PUT", f"{model_path(model)}/aliases/{quote(alias, safe='')}",
                                    json={"version": version})
        return Version.from_json(answer.json())

    def get(self, model: str, alias: str) -> Version:
        return Version.from_json(self._http.get(f"{model_path(model)}/aliases/{quote(alias, safe='')}"))

    def delete(self, model: str, alias: str) -> None:
        self._http.request("DELETE", f"{model_path(model)}/aliases/{quote(alias, safe='')}")


class Datasets:
    def __init__(self, http: Transport):
        self._http = http

    def upload(self, path: str | os.PathLike, *, name: str | None = None, description: str | None = None) -> Dataset:
        """Upload a CSV; the same bytes uploaded again under the same name give back the same dataset."""
        path = Path(path)
        form = {key: value for key, value in (("name", name), ("description", description)) if value}
        answer = self._http.request("POST", "/datasets", data=form or None, idempotent_post=True,
                                    files=lambda: {"file": (path.name, path.open("rb"))})
        return Dataset.from_json(answer.json())

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._http.get(f"/datasets/{dataset_id}"))

    def list(self) -> Iterator[Dataset]:
        for item in self._http.pages("/datasets"):
            yield Dataset.from_json(item)


def _attachment_name(disposition: str, version: int | str) -> str:
    """The file name of a Content-Disposition: its plain `filename` (always ASCII, never a path)."""
    found = re.search(r'filename="?([^";]+)"?', disposition)
    name = os.path.basename(found.group(1)) if found else ""
    return name or f"model-v{version}.bin"
