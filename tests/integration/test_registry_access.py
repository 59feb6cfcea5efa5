"""Who may write what in the registry, and the trail every write leaves: audit rows and outbox events.

A refused request (wrong role, bad input, unknown id) writes nothing: no row, no audit entry, no event.
"""

from __future__ import annotations

import io
import uuid

import pytest
import sqlalchemy as sa

from shared.audit import AuditEntry
from shared.events.outbox import OutboxEvent
from tests.support.auth import api_key_headers
from tests.support.registry import bearer, create_model, model_body, upload_csv, upload_version

pytestmark = pytest.mark.integration

REGISTRY_RESOURCES = ("model", "model_version", "model_alias", "dataset")
ROLES = ("viewer", "data_scientist", "ml_engineer", "admin")


def _trail(app) -> tuple[list[AuditEntry], list[OutboxEvent]]:
    with app.extensions["modelyard"].db.transaction() as session:
        audit = list(session.scalars(sa.select(AuditEntry).where(AuditEntry.resource_type.in_(REGISTRY_RESOURCES))
                                     .order_by(AuditEntry.seq)))
        events = list(session.scalars(sa.select(OutboxEvent).order_by(OutboxEvent.seq)))
    return audit, events


def _writes(client, ds):
    """Each registry write endpoint: (name, minimum role, set-up -> url, call(url, headers) -> response)."""
    def model_with_version() -> str:
        model = create_model(client, ds)
        upload_version(client, ds, model["id"])
        upload_version(client, ds, model["id"], b"second")
        client.put(f"/api/v1/models/{model['id']}/aliases/champion", json={"version": 1}, headers=ds)
        return f"/api/v1/models/{model['id']}"

    def nothing() -> str:
        return ""

    def dataset() -> str:
        uploaded = upload_csv(client, ds, f"a,b\n1,{uuid.uuid4().hex}\n".encode()).json
        return f"/api/v1/datasets/{uploaded['id']}"

    return [
        ("create model", "data_scientist", nothing,
         lambda url, h: client.post("/api/v1/models", json=model_body(), headers=h)),
        ("patch model", "data_scientist", model_with_version,
         lambda url, h: client.patch(url, json={"description": "changed"}, headers=h)),
        ("archive model", "data_scientist", model_with_version, lambda url, h: client.post(f"{url}/archive", headers=h)),
        ("delete model", "admin", model_with_version, lambda url, h: client.delete(url, headers=h)),
        ("upload version", "data_scientist", model_with_version,
         lambda url, h: upload_version(client, h, url.rsplit("/", 1)[1], b"new weights")),
        ("edit version", "data_scientist", model_with_version,
         lambda url, h: client.patch(f"{url}/versions/1", json={"description": "changed"}, headers=h)),
        ("delete version", "admin", model_with_version, lambda url, h: client.delete(f"{url}/versions/2", headers=h)),
        ("set alias", "data_scientist", model_with_version,
         lambda url, h: client.put(f"{url}/aliases/challenger", json={"version": 1}, headers=h)),
        ("remove alias", "data_scientist", model_with_version,
         lambda url, h: client.delete(f"{url}/aliases/champion", headers=h)),
        ("upload dataset", "data_scientist", nothing,
         lambda url, h: upload_csv(client, h, f"a,b\n1,{uuid.uuid4().hex}\n".encode())),
        ("delete dataset", "admin", dataset, lambda url, h: client.delete(url, headers=h)),
    ]


def _check_matrix(app, client, ds, headers_for_role):
    rank = {role: i for i, role in enumerate(ROLES)}
    for name, minimum, setup, call in _writes(client, ds):
        for role in (None, *ROLES):
            url = setup()
            before = _seqs(app)
            response = call(url, headers_for_role(role) if role else {})
            allowed = role is not None and rank[role] >= rank[minimum]
            expected = "2xx" if allowed else (401 if role is None else 403)
            got = "2xx" if 200 <= response.status_code < 300 else response.status_code
            assert got == expected, f"{name} as {role}: {response.status_code} {response.json}"
            if allowed:
                assert _seqs(app)[0] != before[0], f"{name} as {role} left no audit row"
            else:
                assert response.mimetype == "application/problem+json"
                assert _seqs(app) == before, f"{name} as {role} was refused but left a trail"


def _seqs(app) -> tuple[list[int], list[int]]:
    audit, events = _trail(app)
    return [entry.seq for entry in audit], [event.seq for event in events]


def test_every_registry_write_obeys_the_role_matrix_with_tokens(app, client, ds):
    tokens = {role: bearer(app, role) for role in ROLES}
    _check_matrix(app, client, ds, tokens.__getitem__)


def test_every_registry_write_obeys_the_role_matrix_with_api_keys(app, client, ds):
    keys = {role: api_key_headers(app, role) for role in ROLES}
    _check_matrix(app, client, ds, keys.__getitem__)


def test_viewers_can_read_everything(app, client, ds):
    model = create_model(client, ds)
    upload_version(client, ds, model["id"])
    client.put(f"/api/v1/models/{model['id']}/aliases/champion", json={"version": 1}, headers=ds)
    dataset = upload_csv(client, ds, b"a\n1\n").json
    viewer = api_key_headers(app, "viewer")
    base = f"/api/v1/models/{model['id']}"
    for path in ("/api/v1/models", base, f"{base}/versions", f"{base}/versions/1", f"{base}/versions/1/artifact",
                 f"{base}/versions/1/lineage", f"{base}/versions/latest", f"{base}/aliases/champion",
                 "/api/v1/datasets", f"/api/v1/datasets/{dataset['id']}", f"/api/v1/datasets/{dataset['id']}/content"):
        assert client.get(path, headers=viewer).status_code == 200, path
    assert client.get("/api/v1/models").status_code == 401


def test_each_write_leaves_one_audit_row_and_the_right_event(app, client, ds):
    rid = {"X-Request-ID": "req-42"}
    model = client.post("/api/v1/models", json=model_body("churn"), headers={**ds, **rid}).json
    url = f"/api/v1/models/{model['id']}"
    dataset = upload_csv(client, {**ds, **rid}, b"a,b\n1,2\n").json
    upload_version(client, {**ds, **rid}, model["id"], metadata={"dataset_id": dataset["id"]})
    client.patch(url, json={"description": "better", "status": "trained"}, headers={**ds, **rid})
    client.put(f"{url}/aliases/champion", json={"version": 1}, headers={**ds, **rid})
    client.put(f"{url}/aliases/champion", json={"version": 1}, headers={**ds, **rid})  # no change: no trail
    client.delete(f"{url}/aliases/champion", headers={**ds, **rid})
    client.post(f"{url}/archive", headers={**ds, **rid})
    client.delete(url, headers={**bearer(app, "admin", "root"), **rid})

    audit, events = _trail(app)
    assert [entry.action for entry in audit] == [
        "model.created", "dataset.registered", "model_version.registered", "model.updated",
        "model_version.alias_set", "model_version.alias_removed", "model.archived", "model.deleted"]
    assert {entry.request_id for entry in audit} == {"req-42"}
    assert [entry.actor for entry in audit] == ["dana"] * 7 + ["root"]
    updated = audit[3]
    assert updated.before["description"] == "" and updated.after["description"] == "better"
    assert [event.type for event in events] == [
        "model.created", "dataset.registered", "model_version.registered", "model.updated",
        "model_version.alias_set", "model_version.alias_removed", "model.archived", "model.deleted"]
    payloads = [event.envelope["payload"] for event in events]
    assert payloads[0] == {"model_id": model["id"], "name": "churn", "status": "registered", "actor": "dana",
                           "changes": {}, "sensitive_features": []}
    assert payloads[2]["version"] == 1 and payloads[2]["dataset_id"] == dataset["id"]
    assert payloads[3]["changes"] == {"description": "better", "status": "trained"}
    assert (payloads[4]["version"], payloads[4]["previous_version"]) == (1, None)
    assert payloads[5] == {"model_id": model["id"], "alias": "champion", "previous_version": 1, "actor": "dana"}
    assert all(event.envelope["producer"] == "registry" for event in events)


def test_rejected_requests_leave_no_trail(app, client, ds):
    model = create_model(client, ds, "taken")
    upload_version(client, ds, model["id"])
    url = f"/api/v1/models/{model['id']}"
    before = _seqs(app)
    rejected = [
        client.post("/api/v1/models", json=model_body("taken"), headers=ds),
        client.post("/api/v1/models", json={**model_body(), "type": "astrology"}, headers=ds),
        client.post("/api/v1/models", data="{", content_type="application/json", headers=ds),
        client.post("/api/v1/models", data="x", content_type="text/plain", headers=ds),
        client.patch(url, json={"status": "deployed"}, headers=ds),
        client.patch(f"/api/v1/models/{uuid.uuid4()}", json={"description": "x"}, headers=ds),
        client.put(f"{url}/aliases/champion", json={"version": 5}, headers=ds),
        client.delete(f"{url}/aliases/nothing", headers=ds),
        upload_version(client, ds, model["id"], metadata={"parent_version": 9}),
        client.post(f"{url}/versions", data={"artifact": (io.BytesIO(b"x"), "m"), "extra": "1"}, headers=ds,
                    content_type="multipart/form-data"),
        upload_csv(client, ds, b"not,a\ncsv"),
        client.delete(url, headers=ds),
    ]
    assert all(400 <= response.status_code < 500 for response in rejected), [r.status_code for r in rejected]
    assert _seqs(app) == before
    assert client.get(url, headers=ds).json["latest_version"] == 1
