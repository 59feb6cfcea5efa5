"""A create repeated with the same Idempotency-Key replays the first answer and writes nothing more."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from services.registry.models import create_model as create_model_use_case
from shared.auth import Actor
from shared.db import utcnow
from shared.idempotency import IdempotentRequest, purge_expired
from tests.support.auth import PASSWORD, headers_for, make_user, token_headers
from tests.support.registry import create_model, model_body

pytestmark = pytest.mark.integration


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def upload(client, headers, model_id, data: bytes):
    # A new multipart boundary on every send, as real clients do: werkzeug's test client makes one per call.
    return client.post(f"/api/v1/models/{model_id}/versions", headers=headers, content_type="multipart/form-data",
                       data={"artifact": (io.BytesIO(data), "model.bin"),
                             "metadata": json.dumps({"description": "first"})})


def test_the_same_version_upload_sent_twice_with_one_key_makes_one_version(client, ds):
    model = create_model(client, ds, "churn")
    headers = {**ds, **key("upload-1")}
    first = upload(client, headers, model["id"], b"weights")
    second = upload(client, headers, model["id"], b"weights")
    assert first.status_code == second.status_code == 201
    assert second.json == first.json and second.headers["Idempotent-Replayed"] == "true"
    versions = client.get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"]
    assert [v["number"] for v in versions] == [1]


def test_a_key_reused_for_another_body_or_path_is_422_and_writes_nothing(client, ds):
    model = create_model(client, ds, "churn")
    headers = {**ds, **key("k-1")}
    assert upload(client, headers, model["id"], b"weights").status_code == 201
    other_body = upload(client, headers, model["id"], b"other weights")
    assert other_body.status_code == 422 and "Idempotency-Key" in other_body.json["errors"]
    other_path = client.post("/api/v1/models", json=model_body("second"), headers=headers)
    assert other_path.status_code == 422
    assert [m["name"] for m in client.get("/api/v1/models", headers=ds).json["items"]] == ["churn"]
    assert len(client.get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"]) == 1


def test_model_creates_with_a_key_replay_and_without_one_conflict(client, ds):
    headers = {**ds, **key("create-churn")}
    first = client.post("/api/v1/models", json=model_body("churn"), headers=headers)
    replay = client.post("/api/v1/models", json=model_body("churn"), headers=headers)
    assert first.status_code == replay.status_code == 201 and replay.json == first.json
    # Another principal's key is another key: the create runs, and the name is taken.
    other = client.post("/api/v1/models", json=model_body("churn"), headers={**headers_for(client.application,
                                                                                             "data_scientist"),
                                                                            **key("create-churn")})
    assert other.status_code == 409
    assert client.post("/api/v1/models", json=model_body("churn"), headers=ds).status_code == 409


def test_users_and_api_keys_are_created_once_per_key(app, client):
    admin = headers_for(app, "admin")
    body = {"username": "erin", "password": PASSWORD, "role": "viewer"}
    first = client.post("/api/v1/users", json=body, headers={**admin, **key("erin")})
    again = client.post("/api/v1/users", json=body, headers={**admin, **key("erin")})
    assert first.status_code == again.status_code == 201 and again.json == first.json
    made = client.post("/api/v1/auth/api-keys", json={"name": "ci", "role": "viewer"}, headers={**admin, **key("ci")})
    remade = client.post("/api/v1/auth/api-keys", json={"name": "ci", "role": "viewer"}, headers={**admin, **key("ci")})
    assert made.status_code == remade.status_code == 201 and remade.json["key"] == made.json["key"]
    assert len(client.get("/api/v1/auth/api-keys", headers=admin).json["items"]) == 1


def test_a_dataset_upload_repeated_with_a_key_is_replayed(client, ds):
    form = lambda: {"file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv")}  # noqa: E731
    first = client.post("/api/v1/datasets", data=form(), headers={**ds, **key("d")}, content_type="multipart/form-data")
    again = client.post("/api/v1/datasets", data=form(), headers={**ds, **key("d")}, content_type="multipart/form-data")
    assert first.status_code == again.status_code == 201 and again.json == first.json


def test_concurrent_requests_with_one_key_create_once(app, ds):
    model = create_model(app.test_client(), ds, "churn")
    answers, barrier = [], threading.Barrier(4)

    def send():
        client = app.test_client()
        barrier.wait()
        answers.append(upload(client, {**ds, **key("race")}, model["id"], b"weights"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json["id"] for a in answers}) == 1
    versions = app.test_client().get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"]
    assert len(versions) == 1


def test_a_key_older_than_a_day_counts_as_new_and_is_purged(app, client, ds):
    headers = {**ds, **key("old")}
    assert client.post("/api/v1/models", json=model_body("first"), headers=headers).status_code == 201
    db = app.extensions["modelyard"].db
    with db.transaction() as session:
        session.execute(sa.update(IdempotentRequest).values(created_at=utcnow() - timedelta(days=1, minutes=1)))
    assert client.post("/api/v1/models", json=model_body("second"), headers=headers).status_code == 201
    with db.transaction() as session:
        session.execute(sa.update(IdempotentRequest).values(created_at=utcnow() - timedelta(days=2)))
        assert purge_expired(session=session) == 1
    assert len(client.get("/api/v1/models", headers=ds).json["items"]) == 2


def test_an_invalid_key_is_422(client, ds):
    response = client.post("/api/v1/models", json=model_body("churn"), headers={**ds, **key("x" * 256)})
    assert response.status_code == 422 and "Idempotency-Key" in response.json["errors"]
    assert client.get("/api/v1/models", headers=ds).json["items"] == []


def test_a_model_created_beside_a_key_rolls_back_with_it(app, client, ds):
    # Alone, a model create's one statement commits by itself on Postgres (the fast path); beside a key's
    # row it must not, or a crash before the commit would leave the model without its key.
    rt = app.extensions["modelyard"]
    session = rt.db.sessions()
    try:
        session.add(IdempotentRequest(principal="u1", key="k", fingerprint="f", created_at=utcnow()))
        session.flush()  # the claim, as `idempotent` writes it before the view runs
        create_model_use_case(session=session, actor=Actor(id="u1", name="dana", role="data_scientist", via="token"),
                              request_id="test", name="ghost", type="classification", framework="custom")
        session.rollback()
    finally:
        session.close()
    assert client.get("/api/v1/models/ghost", headers=ds).status_code == 404


def test_a_stored_answer_never_holds_an_api_key_in_clear(app, client):
    admin = headers_for(app, "admin")
    made = client.post("/api/v1/auth/api-keys", json={"name": "ci", "role": "viewer"}, headers={**admin, **key("k")})
    with app.extensions["modelyard"].db.transaction() as session:
        stored = session.scalars(sa.select(IdempotentRequest.body)).all()
    assert len(stored) == 1 and made.json["key"].encode() not in stored[0]


def test_a_key_whose_answer_was_sealed_under_an_old_secret_is_a_409_not_a_second_create(
        app, settings_overrides, make_app):
    user, headers = make_user(app, "data_scientist")
    body = model_body("once-only")
    assert app.test_client().post("/api/v1/models", json=body, headers={**headers, **key("k1")}).status_code == 201
    rotated = make_app({**settings_overrides, "jwt_secret": "another-secret-" + "x" * 32})
    again = rotated.test_client().post("/api/v1/models", json=body,
                                       headers={**token_headers(rotated, user), **key("k1")})
    assert again.status_code == 409 and "Idempotency-Key" in again.json["errors"]
    with app.extensions["modelyard"].db.transaction() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM models WHERE name = 'once-only'")) == 1
