"""Shortcuts for registry tests: callers of a role, and the registry calls most tests start with."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shared.audit import AuditEntry
from shared.auth import issue_token
from shared.events.outbox import OutboxEvent


def bearer(app: Flask, role: str, name: str | None = None) -> dict[str, str]:
    """Bearer headers for a caller with `role`; a token needs no user row, so this is instant."""
    with app.app_context():
        token = issue_token(user_id=str(uuid.uuid4()), username=name or f"{role}-user", role=role)
    return {"Authorization": f"Bearer {token}"}


def model_body(name: str | None = None, **fields) -> dict:
    return {"name": name or f"model-{uuid.uuid4().hex[:8]}", "type": "classification",
            "framework": "scikit_learn", **fields}


def create_model(client: FlaskClient, headers: dict, name: str | None = None, **fields) -> dict:
    response = client.post("/api/v1/models", json=model_body(name, **fields), headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def upload_version(client: FlaskClient, headers: dict, model_id: str, data: bytes = b"model bytes",
                   metadata: dict | None = None, filename: str = "model.bin"):
    form = {"artifact": (io.BytesIO(data), filename)}
    if metadata is not None:
        form["metadata"] = json.dumps(metadata)
    return client.post(f"/api/v1/models/{model_id}/versions", data=form, headers=headers,
                       content_type="multipart/form-data")


def upload_csv(client: FlaskClient, headers: dict, data: bytes, filename: str = "data.csv", **fields):
    return client.post("/api/v1/datasets", data={"file": (io.BytesIO(data), filename), **fields}, headers=headers,
                       content_type="multipart/form-data")


def write_trail(app: Flask, settings_overrides: dict) -> tuple:
    """Everything a write leaves: audit rows, outbox rows, stored blobs (to check a refusal left none)."""
    with app.extensions["modelyard"].db.transaction() as session:
        audit = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
        outbox = session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent))
    blobs = sorted(Path(settings_overrides["artifact_root"]).glob("??/??/*"))
    return audit, outbox, blobs
