"""Input that Python would accept but the database would not, and input out of every column's range:
each is refused with a 4xx problem naming what is wrong, never a 500, and nothing is written."""

from __future__ import annotations

import base64
import functools
import io
import json

import pytest

from launch.apps import service_app
from tests.support.auth import headers_for
from tests.support.registry import bearer, create_model, upload_csv, upload_version, write_trail

pytestmark = pytest.mark.integration

MODELS = "/api/v1/models"


@pytest.fixture
def model(client, ds):
    created = create_model(client, ds, "churn")
    assert upload_version(client, ds, created["id"]).status_code == 201
    return created


def _cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize("body, reason", [
    ('{"name": "m", "type": "regression", "framework": "onnx", "hyperparameters": {"a": NaN}}', "NaN"),
    ('{"name": "m", "type": "regression", "framework": "onnx", "hyperparameters": {"a": Infinity}}', "Infinity"),
    ('{"name": "m", "type": "regression", "framework": "onnx", "metadata": {"a": 1e999}}', "1e999"),
    ('{"name": "m\\u0000", "type": "regression", "framework": "onnx"}', "NUL"),
    ('{"name": "m", "type": "regression", "framework": "onnx", "tags": {"k": "\\u0000"}}', "NUL"),
    ('{"name": "m", "type": "regression", "framework": "onnx", "metadata": ' + '{"a": ' * 100 + "1" + "}" * 101,
     "nests"),
    ('{"name": "m", "type": "regression", "framework": "onnx", "metadata": ' + "[" * 5000 + "]" * 5000 + "}",
     "nests"),
])
def test_json_the_database_cannot_store_is_a_400_saying_why(client, ds, body, reason):
    response = client.post(MODELS, data=body, content_type="application/json", headers=ds)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert reason in response.json["detail"]
    assert client.get(MODELS, headers=ds).json["items"] == []


def test_patch_and_put_bodies_are_held_to_the_same_json_rules(app, client, ds, model, settings_overrides):
    before = write_trail(app, settings_overrides)
    url = f"{MODELS}/{model['id']}"
    assert client.patch(url, data='{"hyperparameters": {"a": NaN}}', content_type="application/json",
                        headers=ds).status_code == 400
    assert client.patch(url, data='{"description": "\\u0000"}', content_type="application/json",
                        headers=ds).status_code == 400
    assert client.put(f"{url}/aliases/champion", data='{"version": 1, "x": NaN}', content_type="application/json",
                      headers=ds).status_code == 400
    assert write_trail(app, settings_overrides) == before


def test_a_nul_in_a_query_parameter_is_422_naming_it(client, ds):
    for query, name in (("q=a%00b", "q"), ("tag=k:%00", "tag")):
        response = client.get(f"{MODELS}?{query}", headers=ds)
        assert response.status_code == 422
        assert name in response.json["errors"]


def test_a_nul_in_a_model_name_or_alias_of_a_path_is_a_404_problem(client, ds, model):
    for method, path in (("get", f"{MODELS}/a%00b"), ("get", f"{MODELS}/a%00b/versions"),
                         ("get", f"{MODELS}/a%00b/versions/latest"), ("patch", f"{MODELS}/a%00b"),
                         ("get", f"{MODELS}/{model['id']}/aliases/a%00b"),
                         ("delete", f"{MODELS}/{model['id']}/aliases/a%00b")):
        response = getattr(client, method)(path, headers=ds, **({"json": {}} if method == "patch" else {}))
        assert (response.status_code, response.mimetype) == (404, "application/problem+json"), (method, path)


def test_a_nul_in_a_form_field_or_file_name_is_422_naming_the_part(app, client, ds, model, settings_overrides):
    before = write_trail(app, settings_overrides)
    named = upload_csv(client, ds, b"a,b\n1,2\n", name="x\x00y")
    assert named.status_code == 422 and "name" in named.json["errors"]
    file_name = upload_csv(client, ds, b"a,b\n1,2\n", filename="x\x00.csv")
    assert file_name.status_code == 422 and "file" in file_name.json["errors"]
    metadata = upload_version(client, ds, model["id"], b"other bytes", metadata={"description": "\x00"})
    assert metadata.status_code == 422 and "metadata" in metadata.json["errors"]
    assert write_trail(app, settings_overrides) == before


def test_version_metadata_with_nan_is_422_naming_metadata_and_stores_no_blob(app, client, ds, model,
                                                                             settings_overrides):
    before = write_trail(app, settings_overrides)
    response = client.post(f"{MODELS}/{model['id']}/versions", headers=ds, content_type="multipart/form-data",
                           data={"artifact": (io.BytesIO(b"new bytes"), "m.onnx"),
                                 "metadata": '{"parameters": {"alpha": NaN}}'})
    assert response.status_code == 422
    assert "metadata" in response.json["errors"]
    assert write_trail(app, settings_overrides) == before


@pytest.mark.parametrize("number", [0, 2**31, 10**20])
def test_a_version_number_outside_the_column_is_404_like_any_unknown_version(client, ds, model, number):
    for suffix in ("", "/artifact", "/lineage"):
        response = client.get(f"{MODELS}/{model['id']}/versions/{number}{suffix}", headers=ds)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"


def test_a_version_number_too_large_in_a_body_is_422_naming_the_field(app, client, ds, model, settings_overrides):
    before = write_trail(app, settings_overrides)
    alias = client.put(f"{MODELS}/{model['id']}/aliases/champion", json={"version": 2**31}, headers=ds)
    assert alias.status_code == 422 and "version" in alias.json["errors"]
    parent = upload_version(client, ds, model["id"], b"child", metadata={"parent_version": 10**20})
    assert parent.status_code == 422 and "parent_version" in parent.json["errors"]["metadata"]
    assert write_trail(app, settings_overrides) == before


@pytest.mark.parametrize("path, cursor", [
    ("/versions", {"s": "-number", "v": 10**30, "t": 10**30}),
    ("", {"s": "-created_at", "v": "2024-01-01T00:00:00+00:00", "t": 5}),
    ("", {"s": "-created_at", "v": 5, "t": "not-a-uuid"}),
])
def test_a_forged_cursor_is_422_naming_the_cursor(client, ds, model, path, cursor):
    url = f"{MODELS}/{model['id']}{path}" if path else MODELS
    response = client.get(f"{url}?cursor={_cursor(cursor)}", headers=ds)
    assert response.status_code == 422
    assert "cursor" in response.json["errors"]


def test_a_forged_audit_cursor_with_a_huge_sequence_number_is_422(app, client):
    response = client.get(f"/api/v1/audit?cursor={_cursor({'s': '-seq', 'v': 10**30, 't': 10**30})}",
                          headers=bearer(app, "admin"))
    assert response.status_code == 422


@pytest.mark.parametrize("key", ["myd_\x00_secret", "myd_NOTHEX_secret", "myd_" + "a" * 40 + "_secret"])
def test_an_api_key_with_a_malformed_prefix_is_401(client, key):
    response = client.get(MODELS, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("url", [
    MODELS + "?types=regression", "/api/v1/datasets?nme=x", "/models/{id}/versions?page=2",
    "/models/{id}/versions/1/lineage?dir=up",
])
def test_an_unknown_query_parameter_on_a_registry_list_is_422_naming_it(client, ds, model, url):
    url = url.replace("/models/{id}", f"{MODELS}/{model['id']}")
    response = client.get(url, headers=ds)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {url.rsplit("?", 1)[1].split("=")[0]}


def test_a_method_a_route_does_not_have_is_405_problem_json(client, ds, model):
    response = client.put(MODELS, json={}, headers=ds)
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 405


def test_an_upload_over_the_upload_limit_is_413_and_stores_nothing(app, settings_overrides, clean_db, make_app):
    small = make_app({**settings_overrides, "max_upload_bytes": 4096}, functools.partial(service_app, "registry"))
    client = small.test_client()
    ds = bearer(small, "data_scientist")
    model = create_model(client, ds, "limited")
    before = write_trail(small, settings_overrides)
    response = upload_version(client, ds, model["id"], b"x" * 8192)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert write_trail(small, settings_overrides) == before


@pytest.mark.parametrize("factory", [functools.partial(service_app, "identity"), functools.partial(service_app, "registry")])
def test_each_service_answers_its_probes_and_lists_them_in_its_openapi_document(settings_overrides, clean_db,
                                                                                factory, make_app):
    client = make_app(settings_overrides, factory).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json["status"] == "ready"
    admin = headers_for(client.application, "admin")
    assert "modelyard_http_requests_total" in client.get("/metrics", headers=admin).get_data(as_text=True)
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
    assert all(paths[probe]["get"]["security"] == [] for probe in ("/healthz", "/readyz"))
    assert paths["/metrics"]["get"]["security"]  # an admin or the scrape token


def test_the_openapi_document_describes_errors_as_the_problem_json_they_are(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    default_error = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert list(default_error) == ["application/problem+json"]
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem)
    assert spec["paths"]["/api/v1/auth/token"]["post"]["security"] == []
    number = next(p for p in spec["paths"]["/api/v1/models/{model_ref}/versions/{number}"]["parameters"]
                  if p["name"] == "number")
    assert number["schema"]["maximum"] == 2**31 - 1
