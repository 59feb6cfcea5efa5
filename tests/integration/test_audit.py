"""The audit log: one row per write with who, what, which request and before/after; nothing for a
rejected request; and a hash chain that shows any altered or removed row."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from shared.audit import AuditEntry, record, seal, seal_forever, verify_chain
from shared.db import utcnow
from tests.support.auth import make_api_key, make_user

pytestmark = pytest.mark.integration

USERS = "/api/v1/users"
KEYS = "/api/v1/auth/api-keys"
AUDIT = "/api/v1/audit"


@pytest.fixture
def root(app):
    return make_user(app, "admin", username="root")


def _rows(app) -> list[AuditEntry]:
    with app.extensions["modelyard"].db.transaction() as session:
        return list(session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)))


def _execute(app, statement) -> None:
    with app.extensions["modelyard"].db.transaction() as session:
        session.execute(statement)


def test_each_identity_write_leaves_one_row_with_actor_action_resource_request_and_summaries(app, client, root):
    admin_user, admin = root
    start = len(_rows(app))
    created = client.post(USERS, json={"username": "ada", "password": "long enough", "role": "viewer"},
                          headers={**admin, "X-Request-ID": "req-create"})
    client.patch(f"{USERS}/{created.json['id']}", json={"role": "data_scientist", "password": "another one"},
                 headers={**admin, "X-Request-ID": "req-patch"})
    key = client.post(KEYS, json={"name": "ci", "role": "viewer"}, headers={**admin, "X-Request-ID": "req-key"})
    client.delete(f"{KEYS}/{key.json['id']}", headers={**admin, "X-Request-ID": "req-revoke"})

    rows = _rows(app)[start:]
    assert [(r.action, r.resource_type, r.request_id) for r in rows] == [
        ("user.created", "user", "req-create"),
        ("user.updated", "user", "req-patch"),
        ("api_key.created", "api_key", "req-key"),
        ("api_key.revoked", "api_key", "req-revoke"),
    ]
    assert all(r.actor == "root" and r.actor_id == str(admin_user.id) for r in rows)
    assert rows[0].resource_id == created.json["id"]
    assert rows[0].before is None and rows[0].after == {"username": "ada", "role": "viewer", "is_active": True}
    assert rows[1].before["role"] == "viewer"
    assert rows[1].after == {"username": "ada", "role": "data_scientist", "is_active": True, "password_changed": True,
                             "tokens_withdrawn": True}
    assert rows[3].resource_id == key.json["id"] and rows[3].before["revoked_at"] is None
    assert rows[3].after["revoked_at"] is not None
    text = " ".join(str((r.before, r.after)) for r in rows)
    assert "another one" not in text and "long enough" not in text and key.json["key"] not in text
    assert "scrypt$" not in text


def test_the_audit_api_lists_newest_first_with_filters_and_pages(app, client, root):
    _, admin = root
    for name in ("ann", "bea", "cat"):
        client.post(USERS, json={"username": name, "password": "long enough", "role": "viewer"}, headers=admin)
    key = client.post(KEYS, json={"name": "ci", "role": "viewer"}, headers=admin).json

    everything = client.get(AUDIT, headers=admin).json["items"]
    assert [e["seq"] for e in everything] == sorted((e["seq"] for e in everything), reverse=True)
    assert everything[0]["action"] == "api_key.created" and everything[0]["request_id"]

    by_resource = client.get(AUDIT, query_string={"resource_type": "api_key", "resource_id": key["id"]},
                             headers=admin).json["items"]
    assert [e["action"] for e in by_resource] == ["api_key.created"]
    by_actor = client.get(AUDIT, query_string={"actor": "root", "action": "user.created"}, headers=admin).json
    assert [e["after"]["username"] for e in by_actor["items"]] == ["cat", "bea", "ann"]

    first = client.get(AUDIT, query_string={"actor": "root", "limit": 2}, headers=admin).json
    rest = client.get(AUDIT, query_string={"actor": "root", "limit": 2, "cursor": first["next_cursor"]},
                      headers=admin).json
    assert [e["seq"] for e in first["items"] + rest["items"]] == [e["seq"] for e in everything if e["actor"] == "root"]
    assert rest["next_cursor"] is None


def test_rejected_requests_change_nothing_and_only_the_403s_leave_a_denied_row(app, client, root):
    victim, _ = make_user(app, "viewer", username="victim")
    _, viewer = make_user(app, "viewer")
    _, admin = root
    before = len(_rows(app))
    rejected = [
        client.post(USERS, json={"username": "x", "password": "long enough", "role": "viewer"}),  # 401
        client.post(USERS, json={"username": "x", "password": "long enough", "role": "viewer"}, headers=viewer),
        client.post(USERS, json={"username": "victim", "password": "long enough", "role": "viewer"}, headers=admin),
        client.post(USERS, json={"username": "x", "password": "short", "role": "viewer"}, headers=admin),
        client.post(USERS, data="{", content_type="application/json", headers=admin),
        client.post(USERS, data="x", content_type="text/plain", headers=admin),
        client.patch(f"{USERS}/{victim.id}", json={"role": "admin"}, headers=viewer),
        client.patch(f"{USERS}/{victim.id}", json={"role": "root"}, headers=admin),
        client.post(KEYS, json={"name": "up", "role": "admin"}, headers=viewer),
        client.delete(f"{KEYS}/00000000-0000-0000-0000-000000000000", headers=admin),
        client.post(USERS, data=b"{" + b" " * (2 << 20) + b"}", content_type="application/json", headers=admin),
    ]
    assert [r.status_code for r in rejected] == [401, 403, 409, 422, 400, 415, 403, 422, 403, 404, 413]
    assert [(r.outcome, r.action) for r in _rows(app)[before:]] == [
        ("denied", "POST users.Users"), ("denied", "PATCH users.UserById"), ("denied", "POST auth.ApiKeys")]


def test_verify_reports_an_intact_chain_as_ok(app, client, root):
    _, admin = root
    for name in ("ann", "bea"):
        client.post(USERS, json={"username": name, "password": "long enough", "role": "viewer"}, headers=admin)
    report = client.get(f"{AUDIT}/verify", headers=admin).json
    assert report == {"ok": True, "entries": len(_rows(app)), "first_bad_seq": None, "reason": None}


def test_verify_finds_a_row_whose_after_column_was_altered(app, client, root):
    _, admin = root
    for name in ("ann", "bea", "cat"):
        client.post(USERS, json={"username": name, "password": "long enough", "role": "viewer"}, headers=admin)
    assert client.get(f"{AUDIT}/verify", headers=admin).json["ok"]  # sealed: from now on the chain guards them
    target = _rows(app)[2]
    _execute(app, sa.update(AuditEntry).where(AuditEntry.seq == target.seq)
             .values(after={"username": target.after["username"], "role": "admin", "is_active": True}))
    report = client.get(f"{AUDIT}/verify", headers=admin).json
    assert report["ok"] is False
    assert report["first_bad_seq"] == target.seq
    assert report["entries"] == 2
    assert "altered" in report["reason"]


def test_verify_finds_a_deleted_middle_row(app, client, root):
    _, admin = root
    for name in ("ann", "bea", "cat"):
        client.post(USERS, json={"username": name, "password": "long enough", "role": "viewer"}, headers=admin)
    assert client.get(f"{AUDIT}/verify", headers=admin).json["ok"]
    rows = _rows(app)
    middle = rows[len(rows) // 2]
    _execute(app, sa.delete(AuditEntry).where(AuditEntry.seq == middle.seq))
    report = client.get(f"{AUDIT}/verify", headers=admin).json
    assert report["ok"] is False
    assert report["first_bad_seq"] == rows[len(rows) // 2 + 1].seq


def test_writes_made_with_an_api_key_are_audited_under_the_keys_owner(app, client):
    owner, _ = make_user(app, "admin", username="ops")
    _, key_headers = make_api_key(app, "admin", owner=owner)
    client.post(USERS, json={"username": "ann", "password": "long enough", "role": "viewer"},
                headers={**key_headers, "X-Request-ID": "via-key"})
    row = _rows(app)[-1]
    assert (row.actor, row.actor_id, row.request_id, row.action) == ("ops", str(owner.id), "via-key", "user.created")


def test_an_overlong_client_request_id_is_cut_to_fit_rather_than_failing_the_write(app, client, root):
    _, admin = root
    response = client.post(USERS, json={"username": "ann", "password": "long enough", "role": "viewer"},
                           headers={**admin, "X-Request-ID": "r" * 500})
    assert response.status_code == 201
    assert _rows(app)[-1].request_id == "r" * 128


def _write(session, name: str) -> None:
    record(session, actor_id=None, actor="system", action="thing.done", resource_type="thing",
           resource_id=name, request_id="r")


@pytest.mark.postgres_only  # SQLite has one writer at a time: a later row can never commit first
def test_a_row_committed_after_a_later_one_was_sealed_joins_the_chain_in_the_next_seal(app):
    db = app.extensions["modelyard"].db
    slow = db.sessions()
    # Numbered first, committed last: `record` inserts a row just before its commit, so a slow commit
    # (a disk flush) is the window in which a later-numbered row commits first. Inserted here directly
    # to hold that window open.
    early_seq = slow.execute(sa.insert(AuditEntry.__table__).returning(AuditEntry.seq), {
        "at": utcnow(), "actor": "system", "action": "thing.done", "resource_type": "thing",
        "resource_id": "early", "request_id": "r"}).scalar_one()
    with db.transaction() as session:
        _write(session, "late")
    with db.transaction() as session:
        assert seal(session) == 1
    slow.commit()
    with db.transaction() as session:
        assert seal(session) == 1
    slow.close()
    with db.transaction() as session:
        rows = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.chain_position)).all()
        assert [(row.resource_id, row.chain_position) for row in rows] == [("late", 1), ("early", 2)]
        assert rows[1].seq == early_seq < rows[0].seq
        assert verify_chain(session).ok


def test_the_sealer_thread_seals_new_rows_within_its_interval(app):
    db = app.extensions["modelyard"].db
    with db.transaction() as session:
        _write(session, "a")
    stop = threading.Event()
    sealer = threading.Thread(target=seal_forever, args=(db, stop, 0.05))
    sealer.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with db.transaction() as session:
                if session.scalar(sa.select(sa.func.count()).where(AuditEntry.chain_position.is_(None))) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the sealer did not seal the row")
    finally:
        stop.set()
        sealer.join()
