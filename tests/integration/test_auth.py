"""Logging in, bearer tokens and API keys: what a caller with good, bad or stale credentials sees."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import sqlalchemy as sa

from services.identity.credentials import credentials
from services.identity.passwords import hash_password, verify_password
from services.identity.tables import ApiKey, User
from shared import auth as auth_module
from shared.auth import ROLES, TokenGenerations, VerifiedKeys
from shared.db import Database
from tests.support.auth import PASSWORD, make_api_key, make_user
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

ME = "/api/v1/users/me"
KEYS = "/api/v1/auth/api-keys"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(user, **extra) -> dict:
    """A token's claims as the platform issues them (its issuer and audience), changed by `extra`."""
    now = datetime.now(timezone.utc)
    return {"sub": str(user.id), "name": user.username, "role": user.role, "type": "access", "fresh": False,
            "jti": "j1", "iat": now, "nbf": now, "exp": now + timedelta(minutes=5), "iss": "modelyard",
            "aud": "modelyard-api", **extra}


def test_login_with_right_password_gives_a_bearer_token_that_works(app, client):
    user, _ = make_user(app, "data_scientist", username="ada")
    response = client.post("/api/v1/auth/token", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == app.extensions["modelyard"].settings.jwt_expires_seconds
    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json["username"] == "ada"
    assert me.json["id"] == str(user.id)
    assert me.json["last_login_at"] is not None
    assert "password" not in me.json and "password_hash" not in me.json


def test_wrong_password_unknown_user_and_inactive_user_get_the_same_401(app, client):
    make_user(app, "viewer", username="bob")
    _, admin = make_user(app, "admin")
    carol, _ = make_user(app, "viewer", username="carol")
    client.patch(f"/api/v1/users/{carol.id}", json={"is_active": False}, headers=admin)
    answers = [
        client.post("/api/v1/auth/token", json={"username": "bob", "password": "wrong password"}),
        client.post("/api/v1/auth/token", json={"username": "nobody", "password": PASSWORD}),
        client.post("/api/v1/auth/token", json={"username": "carol", "password": PASSWORD}),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all(a.mimetype == "application/problem+json" for a in answers)
    assert len({a.json["detail"] for a in answers}) == 1


def test_login_without_a_password_is_422_naming_the_field(client):
    response = client.post("/api/v1/auth/token", json={"username": "bob"})
    assert response.status_code == 422
    assert "password" in response.json["errors"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Basic Ym9iOnNlY3JldA=="},
    {"Authorization": "Bearer not-a-jwt"},
    {"X-API-Key": "not-a-key"},
    {"X-API-Key": "myd_deadbeef_unknown"},
], ids=["none", "empty-bearer", "basic", "garbage-jwt", "malformed-key", "unknown-key"])
def test_missing_or_garbage_credentials_are_401(client, headers):
    response = client.get(ME, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(app, client, settings_overrides):
    user, _ = make_user(app, "admin")
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    token = jwt.encode(_claims(user, iat=past, nbf=past, exp=past + timedelta(minutes=5)),
                       settings_overrides["jwt_secret"], algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_token_signed_with_another_secret_is_401(app, client):
    user, _ = make_user(app, "admin")
    token = jwt.encode(_claims(user), "some-other-secret-of-enough-length-000", algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_token_signed_with_the_platforms_secret_and_claims_works(app, client, settings_overrides):
    user, _ = make_user(app, "viewer")
    token = jwt.encode(_claims(user), settings_overrides["jwt_secret"], algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("claims", [{"aud": "evil-service"}, {"iss": "evil-issuer"}, {"aud": None}, {"iss": None}],
                         ids=["other audience", "other issuer", "no audience", "no issuer"])
def test_a_token_for_another_audience_or_from_another_issuer_is_401_even_with_the_right_signature(
        app, client, settings_overrides, claims):
    user, _ = make_user(app, "admin")
    payload = {key: value for key, value in {**_claims(user), **claims}.items() if value is not None}
    token = jwt.encode(payload, settings_overrides["jwt_secret"], algorithm="HS256")
    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_issued_tokens_name_the_configured_issuer_and_audience(app, client, settings_overrides):
    make_user(app, "viewer", username="ida")
    token = client.post("/api/v1/auth/token", json={"username": "ida", "password": PASSWORD}).json["access_token"]
    claims = jwt.decode(token, settings_overrides["jwt_secret"], algorithms=["HS256"], audience="modelyard-api",
                        issuer="modelyard")
    assert (claims["iss"], claims["aud"]) == ("modelyard", "modelyard-api")


def test_a_token_valid_for_one_audience_is_refused_by_an_app_expecting_another(settings_overrides, clean_db,
                                                                              make_app):
    issuing = make_app(settings_overrides)
    user, headers = make_user(issuing, "viewer")
    assert issuing.test_client().get(ME, headers=headers).status_code == 200
    other = make_app({**settings_overrides, "jwt_audience": "another-api"})
    # Same secret, same process: the cache of verified tokens must not answer for the other audience.
    assert other.test_client().get(ME, headers=headers).status_code == 401


def test_alg_none_token_is_401(app, client):
    user, _ = make_user(app, "viewer")
    claims = {k: (int(v.timestamp()) if isinstance(v, datetime) else v) for k, v in _claims(user, role="admin").items()}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tampered_payload_is_401(app, client):
    _, headers = make_user(app, "viewer")
    header, payload, signature = headers["Authorization"].removeprefix("Bearer ").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_refresh_token_is_not_accepted_as_an_access_token(app, client, settings_overrides):
    user, _ = make_user(app, "admin")
    token = jwt.encode(_claims(user, type="refresh"), settings_overrides["jwt_secret"], algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("role", ROLES)
def test_api_key_authenticates_with_its_own_role(app, client, role):
    created, headers = make_api_key(app, role)
    me = client.get(ME, headers=headers)
    assert me.status_code == 200
    assert me.json["id"] == str(created.owner_id)


def test_creating_a_key_shows_it_once_and_stores_only_its_hash(app, client):
    _, headers = make_user(app, "ml_engineer")
    response = client.post(KEYS, json={"name": "ci", "role": "data_scientist", "expires_in_days": 30},
                           headers=headers)
    assert response.status_code == 201
    body = response.json
    assert body["key"].startswith(f"myd_{body['prefix']}_")
    assert body["role"] == "data_scientist" and body["name"] == "ci"
    assert body["expires_at"] is not None
    listed = client.get(KEYS, headers=headers).json["items"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    with app.extensions["modelyard"].db.transaction() as session:
        stored = session.get(ApiKey, uuid.UUID(body["id"]))
        assert stored.key_hash != body["key"] and body["key"] not in stored.key_hash


def test_revoked_api_key_is_refused_on_next_request(app, client):
    owner, token = make_user(app, "data_scientist")
    created, key_headers = make_api_key(app, "viewer", owner=owner)
    assert client.get(ME, headers=key_headers).status_code == 200
    assert client.delete(f"{KEYS}/{created.id}", headers=token).status_code == 204
    refused = client.get(ME, headers=key_headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json["detail"]


def test_a_key_can_revoke_itself(app, client):
    created, key_headers = make_api_key(app, "viewer")
    assert client.delete(f"{KEYS}/{created.id}", headers=key_headers).status_code == 204
    assert client.get(ME, headers=key_headers).status_code == 401


def test_an_api_key_is_refused_from_the_moment_it_expires(app, client, monkeypatch):
    _, key_headers = make_api_key(app, "admin", expires_in_days=1)
    assert client.get(ME, headers=key_headers).status_code == 200
    # A day and a minute on: the key was found good a moment ago, and its expiry is checked on every use.
    later = datetime.now(timezone.utc) + timedelta(days=1, minutes=1)
    monkeypatch.setattr(auth_module, "utcnow", lambda: later)
    refused = client.get(ME, headers=key_headers)
    assert refused.status_code == 401
    assert "expired" in refused.json["detail"]


def test_a_key_revoked_through_another_service_is_refused_there_at_once_and_here_within_a_second(
        app, client, make_app, settings_overrides):
    other = make_app(settings_overrides).test_client()  # another process: its own verified keys
    created, key_headers = make_api_key(app, "viewer")
    assert client.get(ME, headers=key_headers).status_code == 200
    assert other.delete(f"{KEYS}/{created.id}", headers=key_headers).status_code == 204
    assert other.get(ME, headers=key_headers).status_code == 401
    began = time.monotonic()
    wait_for(lambda: client.get(ME, headers=key_headers).status_code == 401,
             timeout=2 * VerifiedKeys.MAX_AGE + 1, what="the revoked key to be refused")
    assert time.monotonic() - began <= VerifiedKeys.MAX_AGE + 0.5


def test_a_key_with_a_changed_secret_part_is_401(app, client):
    _, key_headers = make_api_key(app, "viewer")
    key = key_headers["X-API-Key"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.get(ME, headers={"X-API-Key": tampered}).status_code == 401


@pytest.mark.parametrize("kind", ["token", "api_key"])
def test_a_key_cannot_be_created_above_the_callers_role(app, client, kind):
    owner, token = make_user(app, "data_scientist")
    headers = token if kind == "token" else make_api_key(app, "data_scientist", owner=owner)[1]
    for role in ("ml_engineer", "admin"):
        response = client.post(KEYS, json={"name": "too much", "role": role}, headers=headers)
        assert response.status_code == 403, role
    assert client.post(KEYS, json={"name": "ok", "role": "data_scientist"}, headers=headers).status_code == 201


def test_a_key_made_by_a_lower_key_cannot_exceed_that_key(app, client):
    owner, _ = make_user(app, "admin")
    _, viewer_key = make_api_key(app, "viewer", owner=owner)
    response = client.post(KEYS, json={"name": "escalate", "role": "admin"}, headers=viewer_key)
    assert response.status_code == 403


def test_deactivating_a_user_revokes_their_keys_and_demoting_revokes_keys_above_the_new_role(app, client):
    _, admin = make_user(app, "admin")
    engineer, _ = make_user(app, "ml_engineer")
    _, high_key = make_api_key(app, "ml_engineer", owner=engineer)
    _, low_key = make_api_key(app, "viewer", owner=engineer)
    assert client.patch(f"/api/v1/users/{engineer.id}", json={"role": "data_scientist"},
                        headers=admin).status_code == 200
    assert client.get(ME, headers=high_key).status_code == 401
    assert client.get(ME, headers=low_key).status_code == 200
    assert client.patch(f"/api/v1/users/{engineer.id}", json={"is_active": False}, headers=admin).status_code == 200
    assert client.get(ME, headers=low_key).status_code == 401


def test_passwords_are_stored_as_salted_scrypt_strings():
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("scrypt$") and first != second
    assert verify_password("s3cret-pass", first) and not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "garbage")


def test_credentials_are_checked_before_the_body_so_strangers_learn_nothing_from_validation(client):
    response = client.post("/api/v1/users", json={"username": "", "role": "nope"})
    assert response.status_code == 401


def test_a_keys_last_use_is_listed_after_a_request_succeeds_and_not_after_one_is_refused(app, client):
    owner, token = make_user(app, "data_scientist")
    created, key_headers = make_api_key(app, "viewer", owner=owner)

    def last_used() -> str | None:
        return client.get(KEYS, headers=token).json["items"][0]["last_used_at"]

    assert last_used() is None
    refused = client.post("/api/v1/models", json={"name": "x", "type": "regression", "framework": "custom"},
                          headers=key_headers)
    assert refused.status_code == 403 and last_used() is None  # a refused request writes nothing
    assert client.get(ME, headers=key_headers).status_code == 200
    first = last_used()
    assert first is not None and datetime.fromisoformat(first) > datetime.now(timezone.utc) - timedelta(minutes=1)
    assert client.get(ME, headers=key_headers).status_code == 200
    assert last_used() == first  # written at most once a minute


@pytest.mark.postgres_only  # a database server to cut off; SQLite is a file
def test_token_generations_keep_their_last_answer_while_the_database_cannot_give_one(app, database_url,
                                                                                   monkeypatch):
    from tests.support.polling import wait_for
    from tests.support.tcp_proxy import TcpProxy

    user, _ = make_user(app, "viewer")

    def set_generation(generation: int) -> None:
        with app.extensions["modelyard"].db.transaction() as session:
            session.execute(sa.update(User).where(User.id == user.id).values(token_generation=generation))

    set_generation(2)
    proxy = TcpProxy.for_url(database_url)
    db = Database(proxy.url_for(database_url))
    generations = TokenGenerations(db.sessions, credentials)
    try:
        assert generations.of(str(user.id)) == 2
        monkeypatch.setattr(TokenGenerations, "MAX_AGE", 0.0)  # every call reads again
        proxy.cut()
        set_generation(3)
        assert generations.of(str(user.id)) == 2  # unreachable: the last answer stands, nothing raised
        proxy.restore()
        wait_for(lambda: generations.of(str(user.id)) == 3, timeout=5, what="the new generation to be read")
    finally:
        proxy.cut()
        db.dispose()
