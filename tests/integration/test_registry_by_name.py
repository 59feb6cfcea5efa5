"""Models addressed by their exact name wherever a path takes a model id, as MLflow users address them."""

from __future__ import annotations

import contextlib
import uuid
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from tests.support.registry import bearer, create_model, upload_version

pytestmark = pytest.mark.integration

NAME = "churn prod é?"  # a space, a non-ASCII letter and a character that must be URL-encoded


def by_name(name: str) -> str:
    return "/api/v1/models/" + quote(name, safe="")


@contextlib.contextmanager
def model_queries(app):
    """The statements that read the models table while the block runs."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if "FROM models" in statement:
            seen.append(statement)

    engine = app.extensions["modelyard"].db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_every_model_route_takes_the_models_exact_name(app, client, ds):
    model = create_model(client, ds, NAME)
    url = by_name(NAME)
    assert client.get(url, headers=ds).json == model
    patched = client.patch(url, json={"description": "by name"}, headers=ds)
    assert patched.status_code == 200 and patched.json["id"] == model["id"]

    uploaded = upload_version(client, ds, quote(NAME, safe=""), b"weights")
    assert uploaded.status_code == 201 and uploaded.json["model_id"] == model["id"]
    assert [v["number"] for v in client.get(f"{url}/versions", headers=ds).json["items"]] == [1]
    assert client.get(f"{url}/versions/1", headers=ds).json["id"] == uploaded.json["id"]
    assert client.get(f"{url}/versions/1/artifact", headers=ds).data == b"weights"
    assert client.get(f"{url}/versions/1/lineage", headers=ds).json["root"] == f"model_version:{uploaded.json['id']}"

    assert client.put(f"{url}/aliases/champion", json={"version": 1}, headers=ds).status_code == 200
    assert client.get(f"{url}/aliases/champion", headers=ds).status_code == 200
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["aliases"] == {"champion": 1}
    assert client.delete(f"{url}/aliases/champion", headers=ds).status_code == 204
    assert client.post(f"{url}/archive", headers=ds).json["status"] == "archived"
    assert client.delete(url, headers=bearer(app, "admin")).status_code == 204
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).status_code == 404


def test_an_unknown_name_is_a_404_naming_it_on_every_route(client, ds):
    url = by_name("no-such-model")
    for response in (client.get(url, headers=ds), client.patch(url, json={"description": "x"}, headers=ds),
                     client.get(f"{url}/versions", headers=ds), client.get(f"{url}/versions/1", headers=ds),
                     upload_version(client, ds, "no-such-model"),
                     client.put(f"{url}/aliases/champion", json={"version": 1}, headers=ds)):
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
        assert "'no-such-model'" in response.json["detail"]


def test_a_name_that_looks_like_a_uuid_is_a_name_unless_a_model_has_that_id(client, ds):
    looks_like_an_id = str(uuid.uuid4())
    named = create_model(client, ds, looks_like_an_id)
    assert client.get(f"/api/v1/models/{looks_like_an_id}", headers=ds).json["id"] == named["id"]
    assert client.get(f"/api/v1/models/{looks_like_an_id}", headers=ds).json["id"] == named["id"]  # cached

    # A model whose name is another model's id: the id wins, so this one is reached by its own id only.
    shadowed = create_model(client, ds, named["id"])
    assert client.get(f"/api/v1/models/{named['id']}", headers=ds).json["name"] == looks_like_an_id
    assert client.get(f"/api/v1/models/{shadowed['id']}", headers=ds).json["name"] == named["id"]

    # Other spellings uuid.UUID reads are names, not that id: each reaches the model so named.
    for spelling in ("{%s}" % named["id"], "urn:uuid:" + named["id"], named["id"].replace("-", "")):
        other = create_model(client, ds, spelling)
        assert client.get(f"/api/v1/models/{quote(spelling)}", headers=ds).json["id"] == other["id"], spelling
    assert client.get(f"/api/v1/models/{named['id'].upper()}", headers=ds).json["id"] == named["id"]


def test_a_name_containing_a_slash_is_addressed_by_the_models_id(client, ds):
    model = create_model(client, ds, "team/churn")
    assert client.get(by_name("team/churn"), headers=ds).status_code == 404
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["name"] == "team/churn"


def test_a_cached_get_by_id_opens_no_session_and_by_name_reads_one_indexed_id(app, client, ds, monkeypatch):
    model = create_model(client, ds, "churn")
    client.get(f"/api/v1/models/{model['id']}", headers=ds)  # fills the cache
    db = app.extensions["modelyard"].db
    opened = []
    monkeypatch.setattr(db, "sessions", lambda make=db.sessions: opened.append(1) or make())
    with model_queries(app) as queries:
        assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json == model
    assert queries == [] and opened == []  # the benchmarked hit: not even a session to commit and close
    with model_queries(app) as queries:
        assert client.get(by_name("churn"), headers=ds).json == model
    assert len(queries) == 1 and "models.name =" in queries[0]


def test_a_read_by_name_after_a_write_by_name_never_returns_the_old_value(client, ds):
    create_model(client, ds, "churn", description="old")
    assert client.get(by_name("churn"), headers=ds).json["description"] == "old"
    client.patch(by_name("churn"), json={"description": "new"}, headers=ds)
    assert client.get(by_name("churn"), headers=ds).json["description"] == "new"


def test_the_openapi_document_says_a_model_path_parameter_is_an_id_or_a_name(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in ("/api/v1/models/{model_ref}", "/api/v1/models/{model_ref}/versions",
                 "/api/v1/models/{model_ref}/trainings"):
        [parameter] = [p for p in paths[path]["parameters"] if p["name"] == "model_ref"]
        assert parameter["schema"]["type"] == "string" and "format" not in parameter["schema"]
        assert "name" in parameter["schema"]["description"]
