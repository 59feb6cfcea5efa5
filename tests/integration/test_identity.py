"""Users, roles and API keys through the API: creating, changing, listing, and who may do what."""

from __future__ import annotations

import uuid

import pytest

from services.identity.tables import User
from services.identity.users import ensure_admin
from shared.auth import ROLE_RANK, ROLES, TokenGenerations
from tests.support.auth import PASSWORD, make_api_key, make_user
from tests.support.polling import wait_for
from tests.support.registry import model_body

pytestmark = pytest.mark.integration

USERS = "/api/v1/users"
KEYS = "/api/v1/auth/api-keys"


def test_admin_creates_a_user_who_can_then_log_in(client, admin):
    response = client.post(USERS, json={"username": "ada", "password": "long enough", "role": "data_scientist"},
                           headers=admin)
    assert response.status_code == 201
    body = response.json
    assert body["username"] == "ada" and body["role"] == "data_scientist" and body["is_active"] is True
    assert uuid.UUID(body["id"])
    assert not {"password", "password_hash"} & body.keys()
    assert client.get(f"{USERS}/{body['id']}", headers=admin).json == body
    login = client.post("/api/v1/auth/token", json={"username": "ada", "password": "long enough"})
    assert login.status_code == 200


def test_duplicate_username_is_409_and_changes_nothing(client, admin):
    body = {"username": "ada", "password": "long enough", "role": "viewer"}
    assert client.post(USERS, json=body, headers=admin).status_code == 201
    again = client.post(USERS, json={**body, "role": "admin"}, headers=admin)
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    listed = client.get(USERS, query_string={"role": "admin"}, headers=admin).json["items"]
    assert [u["username"] for u in listed] == ["root"]


def test_users_are_listed_newest_first_unless_sorted_otherwise(client, admin):
    for name in ("zoe", "ada", "mel"):
        assert client.post(USERS, json={"username": name, "password": "long enough", "role": "viewer"},
                           headers=admin).status_code == 201

    def names(**query) -> list[str]:
        return [u["username"] for u in client.get(USERS, query_string=query, headers=admin).json["items"]]

    assert names() == ["mel", "ada", "zoe", "root"]
    assert names(sort="username") == ["ada", "mel", "root", "zoe"]


@pytest.mark.parametrize("body, field", [
    ({"username": "", "password": "long enough", "role": "viewer"}, "username"),
    ({"username": "x" * 256, "password": "long enough", "role": "viewer"}, "username"),
    ({"username": "ada", "password": "short", "role": "viewer"}, "password"),
    ({"username": "ada", "password": "long enough", "role": "superuser"}, "role"),
    ({"username": "ada", "password": "long enough"}, "role"),
    ({"username": "ada", "password": "long enough", "role": "viewer", "is_admin": True}, "is_admin"),
    ({"username": 7, "password": "long enough", "role": "viewer"}, "username"),
], ids=["empty-name", "long-name", "short-password", "unknown-role", "no-role", "unknown-field", "name-not-string"])
def test_bad_user_input_is_422_naming_the_field(client, admin, body, field):
    response = client.post(USERS, json=body, headers=admin)
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_a_username_of_255_characters_is_accepted(client, admin):
    response = client.post(USERS, json={"username": "x" * 255, "password": "long enough", "role": "viewer"},
                           headers=admin)
    assert response.status_code == 201


def test_non_json_and_non_object_bodies_are_refused(client, admin):
    assert client.post(USERS, data="{", content_type="application/json", headers=admin).status_code == 400
    assert client.post(USERS, json=["ada"], headers=admin).status_code == 400
    assert client.post(USERS, data="username=ada", content_type="text/plain", headers=admin).status_code == 415


def test_admin_changes_role_activity_and_password(app, client, admin):
    user, _ = make_user(app, "viewer", username="ada")
    changed = client.patch(f"{USERS}/{user.id}", json={"role": "ml_engineer", "password": "a new password"},
                           headers=admin)
    assert changed.status_code == 200
    assert changed.json["role"] == "ml_engineer"
    assert client.post("/api/v1/auth/token", json={"username": "ada", "password": PASSWORD}).status_code == 401
    assert client.post("/api/v1/auth/token", json={"username": "ada", "password": "a new password"}).status_code == 200
    assert client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin).json["is_active"] is False
    assert client.post("/api/v1/auth/token", json={"username": "ada", "password": "a new password"}).status_code == 401


@pytest.mark.parametrize("change", [{"is_active": False}, {"role": "viewer"}, {"role": "admin"},
                                    {"password": "a new password"}], ids=["deactivated", "demoted", "promoted",
                                                                          "new-password"])
def test_a_users_tokens_are_withdrawn_when_they_are_deactivated_or_their_role_or_password_changes(
        app, client, admin, change):
    user, headers = make_user(app, "data_scientist", username="ada")
    other, other_headers = make_user(app, "data_scientist")
    key, key_headers = make_api_key(app, "viewer", owner=user)
    assert client.get("/api/v1/models", headers=headers).status_code == 200
    changed = client.patch(f"{USERS}/{user.id}", json=change, headers=admin)
    assert changed.status_code == 200
    # Every service re-reads the users' token generations at most a second after it last did.
    refused = wait_for(lambda: (r := client.get("/api/v1/models", headers=headers)).status_code == 401 and r,
                       timeout=2 * TokenGenerations.MAX_AGE + 1, what="the token to be refused")
    assert "Log in again" in refused.json["detail"]
    assert refused.mimetype == "application/problem+json"
    assert client.post("/api/v1/models", json=model_body(), headers=headers).status_code == 401
    assert client.get("/api/v1/models", headers=other_headers).status_code == 200  # only ada's tokens
    if "is_active" not in change:  # a key is revoked only by deactivation or a demotion below its role
        assert client.get("/api/v1/models", headers=key_headers).status_code == 200
        password = change.get("password", PASSWORD)
        login = client.post("/api/v1/auth/token", json={"username": "ada", "password": password})
        fresh = {"Authorization": f"Bearer {login.json['access_token']}"}
        assert client.get("/api/v1/models", headers=fresh).status_code == 200
    audited = client.get("/api/v1/audit", query_string={"resource_id": str(user.id)}, headers=admin).json["items"]
    assert [entry["after"].get("tokens_withdrawn") for entry in audited if entry["action"] == "user.updated"] == [True]


def test_reactivating_a_user_does_not_bring_back_their_old_tokens(app, client, admin):
    user, headers = make_user(app, "viewer", username="ada")
    assert client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin).status_code == 200
    assert client.patch(f"{USERS}/{user.id}", json={"is_active": True}, headers=admin).status_code == 200
    wait_for(lambda: client.get(f"{USERS}/me", headers=headers).status_code == 401,
             timeout=2 * TokenGenerations.MAX_AGE + 1, what="the old token to be refused")
    login = client.post("/api/v1/auth/token", json={"username": "ada", "password": PASSWORD})
    assert client.get(f"{USERS}/me", headers={"Authorization": f"Bearer {login.json['access_token']}"}).json[
        "username"] == "ada"


def test_an_empty_patch_is_422(app, client, admin):
    user, _ = make_user(app, "viewer")
    assert client.patch(f"{USERS}/{user.id}", json={}, headers=admin).status_code == 422


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(app, client):
    root, headers = make_user(app, "admin")
    assert client.patch(f"{USERS}/{root.id}", json={"role": "viewer"}, headers=headers).status_code == 409
    assert client.patch(f"{USERS}/{root.id}", json={"is_active": False}, headers=headers).status_code == 409
    make_user(app, "admin")
    assert client.patch(f"{USERS}/{root.id}", json={"role": "viewer"}, headers=headers).status_code == 200


def test_unknown_or_malformed_user_id_is_404(client, admin):
    assert client.get(f"{USERS}/{uuid.uuid4()}", headers=admin).status_code == 404
    assert client.get(f"{USERS}/not-a-uuid", headers=admin).status_code == 404
    assert client.patch(f"{USERS}/{uuid.uuid4()}", json={"role": "viewer"}, headers=admin).status_code == 404
    assert client.delete(f"{KEYS}/{uuid.uuid4()}", headers=admin).status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_itself_at_users_me(app, client, role):
    user, headers = make_user(app, role)
    me = client.get(f"{USERS}/me", headers=headers)
    assert me.status_code == 200
    assert me.json["username"] == user.username and me.json["role"] == role


def test_users_list_pages_with_a_cursor_without_gaps_or_repeats(app, client, admin):
    for name in ("dan", "ann", "cat", "bea", "eve"):
        make_user(app, "viewer", username=name)
    seen, cursor = [], None
    while True:
        query = {"limit": 2, "sort": "username", **({"cursor": cursor} if cursor else {})}
        page = client.get(USERS, query_string=query, headers=admin).json
        assert len(page["items"]) <= 2
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["ann", "bea", "cat", "dan", "eve", "root"]
    newest_first = client.get(USERS, query_string={"sort": "-created_at", "limit": 1}, headers=admin).json
    assert newest_first["items"][0]["username"] == "eve"
    second = client.get(USERS, query_string={"sort": "-created_at", "limit": 1, "cursor": newest_first["next_cursor"]},
                        headers=admin).json
    assert second["items"][0]["username"] == "bea"


@pytest.mark.parametrize("query, field", [
    ({"limit": 501}, "limit"),
    ({"limit": 0}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"sort": "password_hash"}, "sort"),
    ({"cursor": "not a cursor!"}, "cursor"),
    ({"cursor": "eyJzIjoiLWNyZWF0ZWRfYXQiLCJ2IjoxLCJ0IjoyfQ"}, "cursor"),
    ({"role": "superuser"}, "role"),
    ({"colour": "blue"}, "colour"),
], ids=["limit-over-500", "limit-zero", "limit-not-int", "unknown-sort", "garbage-cursor", "cursor-other-sort",
        "unknown-role", "unknown-param"])
def test_bad_list_arguments_are_422_naming_the_argument(client, admin, query, field):
    response = client.get(USERS, query_string=query, headers=admin)
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_users_list_filters_by_role_and_activity(app, client, admin):
    user, _ = make_user(app, "viewer", username="ann")
    make_user(app, "viewer", username="bea")
    client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin)
    viewers = client.get(USERS, query_string={"role": "viewer", "is_active": "true"}, headers=admin).json
    assert [u["username"] for u in viewers["items"]] == ["bea"]


def test_a_user_lists_only_their_own_keys_and_an_admin_lists_all(app, client, admin):
    alice, alice_headers = make_user(app, "viewer")
    bob, _ = make_user(app, "viewer")
    make_api_key(app, "viewer", owner=alice)
    bobs_key, _ = make_api_key(app, "viewer", owner=bob)
    mine = client.get(KEYS, headers=alice_headers).json["items"]
    assert [k["owner"] for k in mine] == [alice.username]
    assert len(client.get(KEYS, headers=admin).json["items"]) == 2
    # Someone else's key is invisible rather than forbidden.
    assert client.delete(f"{KEYS}/{bobs_key.id}", headers=alice_headers).status_code == 404
    assert client.delete(f"{KEYS}/{bobs_key.id}", headers=admin).status_code == 204


def test_ensure_admin_creates_the_first_admin_once(app):
    db = app.extensions["modelyard"].db
    with db.transaction() as session:
        first, created = ensure_admin(session=session, username="admin", password="first password")
    assert created
    with db.transaction() as session:
        again, created_again = ensure_admin(session=session, username="admin", password="another password")
        assert not created_again
        assert again.id == first.id and again.role == "admin"
        assert session.query(User).count() == 1
    client = app.test_client()
    assert client.post("/api/v1/auth/token", json={"username": "admin", "password": "first password"}).status_code == 200


# The role matrix: every identity endpoint that needs a role, with a JWT and with an API key of
# each role. (method, path maker, body maker, least role allowed, success status)
def _matrix(app, me):
    other, _ = make_user(app, "viewer")
    own_key, _ = make_api_key(app, "viewer", owner=me)
    return [
        ("post", USERS, {"username": f"new-{uuid.uuid4().hex[:6]}", "password": "long enough", "role": "viewer"},
         "admin", 201),
        ("patch", f"{USERS}/{other.id}", {"role": "data_scientist"}, "admin", 200),
        ("get", USERS, None, "admin", 200),
        ("get", f"{USERS}/{other.id}", None, "admin", 200),
        ("get", "/api/v1/audit", None, "admin", 200),
        ("get", "/api/v1/audit/verify", None, "admin", 200),
        ("get", f"{USERS}/me", None, "viewer", 200),
        ("post", KEYS, {"name": "k", "role": "viewer"}, "viewer", 201),
        ("get", KEYS, None, "viewer", 200),
        ("delete", f"{KEYS}/{own_key.id}", None, "viewer", 204),
    ]


@pytest.mark.parametrize("kind", ["token", "api_key"])
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_allows_each_endpoint_to_its_roles_and_forbids_lower_ones(app, client, role, kind):
    me, token = make_user(app, role)
    headers = token if kind == "token" else make_api_key(app, role, owner=me)[1]
    for method, path, body, least, success in _matrix(app, me):
        response = getattr(client, method)(path, json=body, headers=headers)
        expected = success if ROLE_RANK[role] >= ROLE_RANK[least] else 403
        assert response.status_code == expected, f"{role} via {kind}: {method.upper()} {path}"
        anonymous = getattr(client, method)(path, json=body)
        assert anonymous.status_code == 401, f"anonymous: {method.upper()} {path}"
