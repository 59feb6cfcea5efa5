"""Every answer tells a browser not to sniff its type; JSON answers load and run nothing when opened;
answers that hand out a credential are kept by no cache."""

from __future__ import annotations

import pytest

from tests.support.auth import PASSWORD, make_user
from tests.support.registry import create_model, upload_version

pytestmark = pytest.mark.integration

JSON_ONLY = "default-src 'none'"


def test_every_answer_says_nosniff_and_json_answers_forbid_every_source(app, client, ds):
    model = create_model(client, ds, "churn")
    assert upload_version(client, ds, model["id"], b"model bytes", filename="model.onnx").status_code == 201
    answers = {
        "a model": client.get(f"/api/v1/models/{model['id']}", headers=ds),
        "a list": client.get("/api/v1/models", headers=ds),
        "the OpenAPI document": client.get("/api/v1/openapi.json"),
        "a 401 problem": client.get("/api/v1/models"),
        "a 404 problem": client.get("/api/v1/nothing-here", headers=ds),
        "a 405 problem": client.put("/api/v1/models", json={}, headers=ds),
        "a 422 problem": client.get("/api/v1/models?colour=blue", headers=ds),
        "an artifact": client.get(f"/api/v1/models/{model['id']}/versions/1/artifact", headers=ds),
        "metrics": client.get("/metrics"),
    }
    for what, response in answers.items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", what
        is_json = response.mimetype in ("application/json", "application/problem+json")
        assert response.headers.get("Content-Security-Policy") == (JSON_ONLY if is_json else None), what
        assert "no-store" not in response.headers.get("Cache-Control", ""), what
    assert answers["a 404 problem"].mimetype == "application/problem+json"
    assert answers["an artifact"].mimetype == "application/octet-stream"


def test_answers_that_hand_out_a_token_or_a_new_api_key_are_not_stored(app, client):
    user, headers = make_user(app, "data_scientist")
    token = client.post("/api/v1/auth/token", json={"username": user.username, "password": PASSWORD})
    key = client.post("/api/v1/auth/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    assert (token.status_code, key.status_code) == (200, 201)
    for response in (token, key):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Security-Policy"] == JSON_ONLY
    listed = client.get("/api/v1/auth/api-keys", headers=headers)
    assert "no-store" not in listed.headers.get("Cache-Control", "")
