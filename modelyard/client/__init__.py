"""The Python client of Modelyard's HTTP API.

    from modelyard.client import Client
    client = Client("http://127.0.0.1:8000", username="admin", password="change-me")
    model = client.models.create("churn", type="classification", features=["age", "income"])

Needs only `requests` (and `tqdm` for a training's progress bar): no server code is imported.
"""

from __future__ import annotations

import os

from modelyard.client.deployment import ABTests, Deployments, Endpoints
from modelyard.client.errors import (
    Conflict, ModelyardError, NotFound, PermissionDenied, TrainingFailed, Unauthorized, ValidationError,
)
from modelyard.client.http import Transport
from modelyard.client.monitoring import Monitoring
from modelyard.client.registry import Aliases, Datasets, Models, Versions
from modelyard.client.results import (
    ABResults, ABTest, Dataset, Deployment, DriftReport, Endpoint, Model, Performance, Prediction, Recorded,
    Training, Trial, User, Version,
)
from modelyard.client.training import TrainingRun, Trainings

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """The platform at `url` (else MODELYARD_URL, else make run's address), as the caller given by a
    bearer `token`, an `api_key` (else MODELYARD_API_KEY), or a `username` and `password` exchanged
    for a token (again when it expires)."""

    def __init__(self, url: str | None = None, token: str | None = None, api_key: str | None = None,
                 username: str | None = None, password: str | None = None, *, timeout: float = 30.0,
                 retries: int = 4):
        if not (token or username):
            api_key = api_key or os.environ.get("MODELYARD_API_KEY") or None
        self.url = (url or os.environ.get("MODELYARD_URL") or DEFAULT_URL).rstrip("/")
        self.http = Transport(self.url, token=token, api_key=api_key, username=username, password=password,
                              timeout=timeout, retries=retries)
        self.models = Models(self.http)
        self.versions = Versions(self.http)
        self.aliases = Aliases(self.http)
        self.datasets = Datasets(self.http)
        self.trainings = Trainings(self.http)
        self.deployments = Deployments(self.http)
        self.endpoints = Endpoints(self.http)
        self.monitoring = Monitoring(self.http)
        self.ab_tests = ABTests(self.http)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def me(self) -> User:
        """Who the client acts as."""
        return User.from_json(self.http.get("/users/me"))

    def create_user(self, username: str, password: str, role: str = "viewer") -> User:
        """A new user (admin only)."""
        return User.from_json(self.http.post("/users", {"username": username, "password": password, "role": role},
                                             idempotent_post=True))


__all__ = [
    "Client", "ModelyardError", "Unauthorized", "PermissionDenied", "NotFound", "Conflict", "ValidationError",
    "TrainingFailed", "TrainingRun", "Model", "Version", "Dataset", "Training", "Trial", "Deployment", "Endpoint",
    "Prediction", "Recorded", "DriftReport", "Performance", "ABTest", "ABResults", "User",
]
