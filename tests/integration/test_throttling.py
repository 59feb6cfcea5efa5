"""Throttling: failed logins per user name and per client address, and requests per principal, are
answered 429 problem+json with Retry-After once spent."""

from __future__ import annotations

import pytest

from services.identity import login
from tests.support.auth import PASSWORD, api_key_headers, make_api_key, make_user

pytestmark = pytest.mark.integration

TOKEN = "/api/v1/auth/token"


def _login(client, username: str, password: str, address: str = "198.51.100.7"):
    return client.post(TOKEN, json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def _assert_throttled(response) -> None:
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_after_too_many_wrong_passwords_even_the_right_one_is_429_until_the_window_passes(
        settings_overrides, clean_db, make_app):
    app = make_app({**settings_overrides, "login_failures_per_user": "3 per minute"})
    client = app.test_client()
    make_user(app, "viewer", username="bob")
    # Varying the case of the name does not buy more guesses.
    assert [_login(client, name, "wrong guess").status_code for name in ("bob", "BOB", "Bob")] == [401] * 3
    _assert_throttled(_login(client, "bob", PASSWORD))
    assert "user name" in _login(client, "bOb", "wrong guess").json["detail"]
    assert _login(client, "someone-else", "wrong guess").status_code == 401  # other names are unaffected


def test_too_many_failed_logins_from_one_address_are_429_for_every_name(settings_overrides, clean_db, make_app):
    app = make_app({**settings_overrides, "login_failures_per_address": "3 per minute"})
    client = app.test_client()
    make_user(app, "viewer", username="eve")
    for name in ("ann", "bea", "cat"):
        assert _login(client, name, "wrong guess").status_code == 401
    _assert_throttled(_login(client, "eve", PASSWORD))
    assert _login(client, "eve", PASSWORD, address="203.0.113.9").status_code == 200


def test_the_openapi_document_lists_the_logins_429_as_problem_json(client):
    responses = client.get("/api/v1/openapi.json").json["paths"][TOKEN]["post"]["responses"]
    assert "application/problem+json" in responses["429"]["content"]
    assert "Retry-After" in responses["429"]["headers"]


def test_a_throttled_login_hashes_no_password(settings_overrides, clean_db, make_app, monkeypatch):
    app = make_app({**settings_overrides, "login_failures_per_user": "2 per minute"})
    client = app.test_client()
    make_user(app, "viewer", username="dan")
    hashed = []
    real = login.verify_password
    monkeypatch.setattr(login, "verify_password", lambda *args: hashed.append(1) or real(*args))
    for _ in range(2):
        _login(client, "dan", "wrong guess")
    for _ in range(5):
        _assert_throttled(_login(client, "dan", "wrong guess"))
    assert len(hashed) == 2


def test_a_principal_past_its_request_limit_gets_429_with_retry_after(settings_overrides, clean_db, make_app):
    app = make_app({**settings_overrides, "requests_per_principal": "3 per minute"})
    client = app.test_client()
    user, token = make_user(app, "viewer")
    _, key = make_api_key(app, "viewer", owner=user)
    assert [client.get("/api/v1/models", headers=token).status_code for _ in range(3)] == [200] * 3
    _assert_throttled(client.get("/api/v1/users/me", headers=token))
    # The limit is the user's, whichever credential they use; other users are unaffected.
    _assert_throttled(client.get("/api/v1/models", headers=key))
    assert client.get("/api/v1/models", headers=api_key_headers(app, "viewer")).status_code == 200


def test_by_default_logins_are_throttled_and_requests_per_principal_are_not(settings_overrides, clean_db,
                                                                            make_app):
    app = make_app(settings_overrides)
    client = app.test_client()
    _, token = make_user(app, "viewer")
    assert all(client.get("/api/v1/models", headers=token).status_code == 200 for _ in range(50))
    statuses = [_login(client, "mallory", "wrong guess").status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]


def test_a_limit_that_is_not_a_rate_is_refused_at_start_up(settings_overrides, clean_db, make_app):
    from shared.config import ConfigError

    with pytest.raises(ConfigError, match="MODELYARD_REQUESTS_PER_PRINCIPAL"):
        make_app({**settings_overrides, "requests_per_principal": "lots"})


@pytest.mark.parametrize("proxy_hops", [0, 1])
def test_the_address_counted_is_the_one_a_trusted_proxy_saw_and_otherwise_the_peers(settings_overrides, clean_db,
                                                                                   make_app, proxy_hops):
    app = make_app({**settings_overrides, "login_failures_per_address": "2 per minute", "proxy_hops": proxy_hops})
    client = app.test_client()
    make_user(app, "viewer", username="fay")

    def via_gateway(client_address: str, password: str):
        return client.post(TOKEN, json={"username": "fay", "password": password},
                           headers={"X-Forwarded-For": client_address}, environ_base={"REMOTE_ADDR": "10.0.0.2"})

    assert [via_gateway("198.51.100.1", "wrong guess").status_code for _ in range(2)] == [401, 401]
    other_client = via_gateway("198.51.100.2", PASSWORD)
    # Behind a trusted proxy each client counts alone; without one, a forged header buys no fresh count.
    assert other_client.status_code == (200 if proxy_hops else 429)
