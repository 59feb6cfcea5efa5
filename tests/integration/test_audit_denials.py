"""Refused requests leave a trace: a 403, or a 401 naming a known user or key, is an audit row with
outcome `denied`; it joins the hash chain without changing the hashes of rows sealed before."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa

from shared import refusals
from shared.audit import GENESIS, AuditEntry
from shared.auth import TokenGenerations
from tests.support.auth import PASSWORD, make_api_key, make_user
from tests.support.polling import wait_for
from tests.support.registry import create_model

pytestmark = pytest.mark.integration

AUDIT = "/api/v1/audit"
TOKEN = "/api/v1/auth/token"


def _denied(client, admin, **filters) -> list[dict]:
    return client.get(AUDIT, query_string={"outcome": "denied", **filters}, headers=admin).json["items"]


def test_a_viewers_attempted_delete_is_403_and_a_denied_audit_row(app, client, admin, ds):
    model = create_model(client, ds, name="churn")
    viewer, viewer_headers = make_user(app, "viewer", username="vic")
    response = client.delete(f"/api/v1/models/{model['id']}", headers={**viewer_headers, "X-Request-ID": "req-del"})
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    [row] = _denied(client, admin)
    assert (row["actor"], row["actor_id"], row["action"]) == ("vic", str(viewer.id), "DELETE registry_models.ModelItem")
    assert (row["resource_type"], row["resource_id"]) == ("path", f"/api/v1/models/{model['id']}")
    assert row["request_id"] == "req-del"
    assert row["after"]["status"] == 403 and row["outcome"] == "denied"
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).status_code == 200


def test_a_wrong_password_for_a_known_user_is_audited_and_one_for_an_unknown_name_is_not(app, client, admin):
    user, _ = make_user(app, "viewer", username="bob")
    assert client.post(TOKEN, json={"username": "bob", "password": "not the password"}).status_code == 401
    assert client.post(TOKEN, json={"username": "nobody", "password": "not the password"}).status_code == 401
    [row] = _denied(client, admin)
    assert (row["actor"], row["actor_id"], row["action"]) == ("bob", str(user.id), "POST auth.Token")
    assert row["after"]["status"] == 401
    assert client.post(TOKEN, json={"username": "bob", "password": PASSWORD}).status_code == 200


def test_a_revoked_key_and_a_withdrawn_token_are_audited_under_their_owner(app, client, admin):
    owner, owner_token = make_user(app, "data_scientist", username="kim")
    created, key_headers = make_api_key(app, "data_scientist", owner=owner)
    assert client.delete(f"/api/v1/auth/api-keys/{created.id}", headers=key_headers).status_code == 204
    assert client.get("/api/v1/models", headers=key_headers).status_code == 401
    assert client.patch(f"/api/v1/users/{owner.id}", json={"role": "viewer"}, headers=admin).status_code == 200
    wait_for(lambda: client.get("/api/v1/models", headers=owner_token).status_code == 401,
             timeout=2 * TokenGenerations.MAX_AGE + 1, what="the withdrawn token to be refused")
    rows = _denied(client, admin, actor="kim")
    assert [(row["action"], row["after"]["detail"].split(":")[0]) for row in rows] == [
        ("GET registry_models.Models", "The bearer token was withdrawn"),
        ("GET registry_models.Models", "The API key has been revoked."),
    ]


def test_denied_rows_join_the_chain_and_rows_without_an_outcome_keep_their_old_hashes(app, client, admin):
    _, viewer = make_user(app, "viewer")
    assert client.get("/api/v1/users", headers=viewer).status_code == 403
    assert client.get(f"{AUDIT}/verify", headers=admin).json["ok"] is True
    with app.extensions["modelyard"].db.transaction() as session:
        first = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.chain_position)).first()
        denied = session.scalar(sa.select(AuditEntry).where(AuditEntry.outcome == "denied"))
    # The digest as it was before outcomes existed: an allowed row's hash must not have changed.
    at = first.at.replace(tzinfo=None).isoformat(timespec="microseconds")
    content = {"at": at, "actor_id": first.actor_id, "actor": first.actor, "action": first.action,
               "resource_type": first.resource_type, "resource_id": first.resource_id,
               "request_id": first.request_id, "before": first.before, "after": first.after}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    assert first.hash == hashlib.sha256((GENESIS + canonical).encode()).hexdigest()
    # The outcome is guarded by the chain: a denial passed off as an allowed change is found.
    with app.extensions["modelyard"].db.transaction() as session:
        session.execute(sa.update(AuditEntry).where(AuditEntry.seq == denied.seq).values(outcome="allowed"))
    report = client.get(f"{AUDIT}/verify", headers=admin).json
    assert (report["ok"], report["first_bad_seq"]) == (False, denied.seq)


def test_a_denial_that_cannot_be_recorded_still_answers_403_not_500(app, client, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(refusals, "record", broken)
    _, viewer = make_user(app, "viewer")
    response = client.get("/api/v1/users", headers=viewer)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"


def test_the_audit_list_refuses_an_unknown_outcome(client, admin):
    response = client.get(AUDIT, query_string={"outcome": "maybe"}, headers=admin)
    assert response.status_code == 422
    assert "outcome" in response.json["errors"]
