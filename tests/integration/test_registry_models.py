"""Registered models over HTTP: create, read, list with filters and pages, update, lifecycle, delete."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.registry import models
from shared.events.outbox import OutboxEvent
from tests.support.registry import bearer, create_model, model_body, upload_version

pytestmark = pytest.mark.integration


def test_a_created_model_is_returned_with_its_server_fields(client, ds):
    body = model_body("churn", description="Predicts churn", hyperparameters={"C": 1.0}, features=["age", "plan"],
                      target_variable="churned", tags={"team": "growth"}, metadata={"owner": "dana"})
    response = client.post("/api/v1/models", json=body, headers=ds)
    assert response.status_code == 201
    model = response.json
    assert uuid.UUID(model["id"])
    assert model["status"] == "registered"
    assert model["created_by"] == "dana"
    assert model["latest_version"] is None
    assert model["aliases"] == {}
    assert model["created_at"].endswith("+00:00") and model["updated_at"]
    for field in ("name", "description", "hyperparameters", "features", "target_variable", "tags", "metadata"):
        assert model[field] == body[field]
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json == model


def test_a_duplicate_name_is_a_conflict_and_writes_nothing(app, client, ds):
    create_model(client, ds, "fraud")

    def rows() -> tuple[int, ...]:
        with app.extensions["modelyard"].db.transaction() as session:
            return tuple(session.scalar(sa.select(sa.func.count()).select_from(sa.table(table)))
                         for table in ("models", "audit_log", "outbox"))

    before = rows()
    response = client.post("/api/v1/models", json=model_body("fraud"), headers=ds)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert rows() == before == (1, 1, 1)


@pytest.mark.parametrize("field, value", [
    ("name", ""), ("name", "x" * 256), ("type", "astrology"), ("framework", "excel"),
    ("tags", {"team": 3}), ("features", "age"), ("unexpected", 1),
])
def test_invalid_fields_are_422_naming_the_field(client, ds, field, value):
    response = client.post("/api/v1/models", json={**model_body(), field: value}, headers=ds)
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_missing_required_fields_are_named(client, ds):
    response = client.post("/api/v1/models", json={"description": "no name"}, headers=ds)
    assert response.status_code == 422
    assert {"name", "type", "framework"} <= set(response.json["errors"])


def test_malformed_bodies_are_refused_before_anything_is_written(client, ds):
    assert client.post("/api/v1/models", data="{not json", content_type="application/json", headers=ds).status_code == 400
    assert client.post("/api/v1/models", json=[model_body()], headers=ds).status_code == 400
    assert client.post("/api/v1/models", data="name=x", content_type="text/plain", headers=ds).status_code == 415
    huge = model_body(description="x" * (1 << 20))
    assert client.post("/api/v1/models", json=huge, headers=ds).status_code == 413
    assert client.get("/api/v1/models", headers=ds).json["items"] == []


def test_unknown_and_malformed_ids_are_404(client, ds):
    for path in (f"/api/v1/models/{uuid.uuid4()}", "/api/v1/models/not-a-uuid", "/api/v1/models/1234"):
        response = client.get(path, headers=ds)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
    assert client.patch(f"/api/v1/models/{uuid.uuid4()}", json={"description": "x"}, headers=ds).status_code == 404


def test_list_filters_by_type_framework_status_and_tags(client, ds):
    a = create_model(client, ds, "a", type="regression", framework="xgboost", tags={"team": "risk", "tier": "1"})
    create_model(client, ds, "b", type="regression", framework="lightgbm", tags={"team": "risk"})
    create_model(client, ds, "c", tags={"team": "growth"})
    client.post(f"/api/v1/models/{a['id']}/archive", headers=ds)

    def names(query):
        response = client.get(f"/api/v1/models?{query}", headers=ds)
        assert response.status_code == 200, response.json
        return sorted(item["name"] for item in response.json["items"])

    assert names("type=regression") == ["a", "b"]
    assert names("framework=lightgbm") == ["b"]
    assert names("status=archived") == ["a"]
    assert names("tag=team:risk") == ["a", "b"]
    assert names("tag=team:risk&tag=tier:1") == ["a"]
    assert names("tag=team:nobody") == []
    assert client.get("/api/v1/models?type=astrology", headers=ds).status_code == 422


def test_search_is_case_insensitive_over_name_and_description(client, ds):
    create_model(client, ds, "Churn-Predictor")
    create_model(client, ds, "ltv", description="Lifetime value, used by CHURN team")
    create_model(client, ds, "fraud")
    items = client.get("/api/v1/models?q=churn", headers=ds).json["items"]
    assert sorted(item["name"] for item in items) == ["Churn-Predictor", "ltv"]


@pytest.mark.parametrize("q", ["'; drop table models; --", "%", "_", "\\", "' OR 1=1 --"])
def test_search_text_that_looks_like_sql_or_wildcards_is_plain_data(client, ds, q):
    create_model(client, ds, "plain")
    create_model(client, ds, "odd 100% _sure_ \\ '; drop table models; -- ' OR 1=1 --")
    response = client.get("/api/v1/models", query_string={"q": q}, headers=ds)
    assert response.status_code == 200
    assert [item["name"] for item in response.json["items"]] == ["odd 100% _sure_ \\ '; drop table models; -- ' OR 1=1 --"]
    assert len(client.get("/api/v1/models", headers=ds).json["items"]) == 2


def test_a_wildcard_typed_straight_into_the_url_matches_only_names_holding_it(client, ds):
    create_model(client, ds, "plain")
    create_model(client, ds, "100% sure")
    # A bare % is no escape: it stands for itself. "%%" is two of them, which no name holds.
    for raw, expected in (("%", ["100% sure"]), ("%25", ["100% sure"]), ("%%", []), ("_", []), ("%5F", [])):
        items = client.get(f"/api/v1/models?q={raw}", headers=ds).json["items"]
        assert [item["name"] for item in items] == expected, raw


@pytest.mark.postgres_only  # prepared plans are Postgres's
def test_a_search_is_planned_for_its_text_on_every_run_while_other_lists_are_prepared(app):
    # A prepared statement may be given one plan for any search text; with the trigram indexes a rare
    # text takes milliseconds and a plan made for a common one ~20 times that (bench/registry.py).
    db = app.extensions["modelyard"].db
    with db.sessions() as session:  # one connection: pg_prepared_statements shows its own statements
        for _ in range(8):  # psycopg prepares a statement on its sixth run
            models.list_models(session=session, limit=5, q="churn")
            models.list_models(session=session, limit=5, type="classification")
        prepared = session.scalars(sa.text("SELECT statement FROM pg_prepared_statements")).all()
    assert any("models.type" in statement for statement in prepared)
    assert not any("ILIKE" in statement.upper() for statement in prepared)


def test_pages_follow_the_cursor_without_gaps_or_repeats(client, ds):
    names = [f"m{i:02d}" for i in range(7)]
    for name in reversed(names):
        create_model(client, ds, name)
    seen, cursor = [], None
    while True:
        query = {"limit": 3, "sort": "name", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/models", query_string=query, headers=ds).json
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names
    newest_first = client.get("/api/v1/models?limit=500", headers=ds).json["items"]
    assert [item["name"] for item in newest_first] == names  # default sort: -created_at
    desc = client.get("/api/v1/models?sort=-name&limit=2", headers=ds).json
    assert [item["name"] for item in desc["items"]] == ["m06", "m05"]
    assert client.get("/api/v1/models?sort=size", headers=ds).status_code == 422
    assert client.get("/api/v1/models?limit=501", headers=ds).status_code == 422
    bad = client.get("/api/v1/models", query_string={"cursor": "garbage", "sort": "name"}, headers=ds)
    assert bad.status_code == 422 and "cursor" in bad.json["errors"]


def test_patch_changes_only_the_given_fields(client, ds):
    model = create_model(client, ds, "p", description="old", tags={"a": "1"})
    response = client.patch(f"/api/v1/models/{model['id']}", json={"description": "new", "tags": {"b": "2"}},
                            headers=ds)
    assert response.status_code == 200
    assert response.json["description"] == "new"
    assert response.json["tags"] == {"b": "2"}
    assert response.json["name"] == "p"
    assert response.json["updated_at"] > model["updated_at"]
    assert client.patch(f"/api/v1/models/{model['id']}", json={"name": "renamed"}, headers=ds).status_code == 422


def test_a_read_after_an_update_never_returns_the_old_value(client, ds):
    model = create_model(client, ds)
    url = f"/api/v1/models/{model['id']}"
    for i in range(5):
        assert client.get(url, headers=ds).json["description"] == ("" if i == 0 else f"v{i - 1}")
        client.patch(url, json={"description": f"v{i}"}, headers=ds)
        assert client.get(url, headers=ds).json["description"] == f"v{i}"
    upload_version(client, ds, model["id"])
    assert client.get(url, headers=ds).json["latest_version"] == 1
    client.put(f"{url}/aliases/champion", json={"version": 1}, headers=ds)
    assert client.get(url, headers=ds).json["aliases"] == {"champion": 1}
    client.delete(f"{url}/aliases/champion", headers=ds)
    assert client.get(url, headers=ds).json["aliases"] == {}


def test_status_follows_the_lifecycle_and_refusals_list_the_allowed_moves(client, ds):
    model = create_model(client, ds)
    url = f"/api/v1/models/{model['id']}"
    for status in ("training", "trained", "deployed", "trained"):
        response = client.patch(url, json={"status": status}, headers=ds)
        assert response.status_code == 200 and response.json["status"] == status
    refused = client.patch(url, json={"status": "failed"}, headers=ds)
    assert refused.status_code == 409
    assert "training" in refused.json["detail"] and "archived" in refused.json["detail"]
    assert client.get(url, headers=ds).json["status"] == "trained"


def test_archive_then_restore(client, ds):
    model = create_model(client, ds)
    url = f"/api/v1/models/{model['id']}"
    assert client.post(f"{url}/archive", headers=ds).json["status"] == "archived"
    assert client.patch(url, json={"status": "training"}, headers=ds).status_code == 409
    assert upload_version(client, ds, model["id"]).status_code == 409
    assert client.patch(url, json={"status": "registered"}, headers=ds).json["status"] == "registered"


def test_hard_delete_removes_the_model_with_its_versions_and_aliases(app, client, ds):
    model = create_model(client, ds)
    url = f"/api/v1/models/{model['id']}"
    upload_version(client, ds, model["id"])
    client.put(f"{url}/aliases/champion", json={"version": 1}, headers=ds)
    client.get(url, headers=ds)  # cached
    assert client.delete(url, headers=bearer(app, "admin")).status_code == 204
    assert client.get(url, headers=ds).status_code == 404
    assert client.get(f"{url}/versions/1", headers=ds).status_code == 404
    assert client.delete(url, headers=bearer(app, "admin")).status_code == 404
    with app.extensions["modelyard"].db.transaction() as session:
        deleted = session.scalars(sa.select(OutboxEvent.envelope).where(OutboxEvent.type == "model.deleted")).all()
    assert [(event["payload"]["model_id"], event["payload"]["changes"]) for event in deleted] == [(model["id"], {"versions": 1})]
    # The name is free again.
    create_model(client, ds, model["name"])


@pytest.mark.parametrize("method, path", [("post", ""), ("patch", "/{id}")])
def test_created_by_in_a_models_body_is_a_422_saying_the_creator_comes_from_the_credentials(
        client, ds, method, path):
    model = create_model(client, ds, "existing")
    body = {"created_by": "someone-else"} if method == "patch" else model_body(created_by="someone-else")
    response = getattr(client, method)("/api/v1/models" + path.format(id=model["id"]), json=body, headers=ds)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert "taken from the credentials" in response.json["detail"]
    assert list(response.json["errors"]) == ["created_by"]
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["created_by"] == "dana"
