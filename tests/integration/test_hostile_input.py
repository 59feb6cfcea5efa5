"""Input an attacker or a careless client sends: past a limit, or in the wrong shape. Each is refused
whole with a 4xx problem naming what is wrong, never a 500, and nothing is written."""

from __future__ import annotations

import functools
import io
import json
import time
from pathlib import Path

import pytest

from launch.apps import service_app
from tests.support.registry import bearer, create_model, model_body, upload_csv, write_trail

pytestmark = pytest.mark.integration

MODELS = "/api/v1/models"
MiB = 1 << 20


def _chunked(client, url: str, body: bytes, headers: dict, content_type: str, encoding: str = "chunked"):
    """POST `body` with no Content-Length, as a client streaming it chunked; gunicorn (like any server
    that decodes chunked bodies) marks such a stream terminated, which the test client does not."""
    return client.post(url, input_stream=io.BytesIO(body), content_type=content_type,
                       headers={**headers, "Transfer-Encoding": encoding},
                       environ_overrides={"wsgi.input_terminated": True})


def _json_bodies() -> dict[str, bytes]:
    return {
        "two MiB of JSON": json.dumps(model_body(description="x" * (2 * MiB))).encode(),
        "valid JSON, then two MiB of whitespace": json.dumps(model_body()).encode() + b" " * (2 * MiB),
    }


@pytest.mark.parametrize("kind", list(_json_bodies()))
def test_a_json_body_over_the_limit_is_413_whether_chunked_or_sent_with_a_length(app, client, ds, settings_overrides,
                                                                                 kind):
    body = _json_bodies()[kind]
    before = write_trail(app, settings_overrides)
    # gunicorn also takes "identity, chunked" and "gzip, chunked": each is a body without a length.
    for response in (_chunked(client, MODELS, body, ds, "application/json"),
                     _chunked(client, MODELS, body, ds, "application/json", encoding="identity, chunked"),
                     _chunked(client, MODELS, body, ds, "application/json", encoding="gzip, chunked"),
                     client.post(MODELS, data=body, content_type="application/json", headers=ds)):
        assert response.status_code == 413, response.json
        assert response.mimetype == "application/problem+json"
        assert str(1 * MiB) in response.json["detail"]
    assert client.get(MODELS, headers=ds).json["items"] == []
    assert write_trail(app, settings_overrides) == before


def test_a_post_without_a_body_is_no_body_under_a_server_that_marks_every_stream_terminated(client, ds):
    # gunicorn sets wsgi.input_terminated on every request: a bodiless POST must not be taken for a body.
    model = create_model(client, ds)
    archived = client.post(f"{MODELS}/{model['id']}/archive", headers=ds,
                           environ_overrides={"wsgi.input_terminated": True})
    assert archived.status_code == 200 and archived.json["status"] == "archived"


def test_a_chunked_json_body_of_exactly_the_limit_is_read_whole(settings_overrides, clean_db, make_app):
    small = make_app({**settings_overrides, "max_json_bytes": 4096})
    client = small.test_client()
    ds = bearer(small, "data_scientist")
    body = json.dumps(model_body("exact")).encode()
    body += b" " * (4096 - len(body))
    assert _chunked(client, MODELS, body, ds, "application/json").status_code == 201
    assert _chunked(client, MODELS, body + b" ", ds, "application/json").status_code == 413


def test_a_chunked_upload_over_the_upload_limit_is_413_and_stores_nothing(settings_overrides, clean_db, make_app):
    small = make_app({**settings_overrides, "max_upload_bytes": 4096}, functools.partial(service_app, "registry"))
    client = small.test_client()
    ds = bearer(small, "data_scientist")
    model = create_model(client, ds, "limited")
    boundary = "modelyard-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"m.onnx\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"x" * 8192 + f"\r\n--{boundary}--\r\n".encode()
    before = write_trail(small, settings_overrides)
    response = _chunked(client, f"{MODELS}/{model['id']}/versions", body, ds,
                        f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert write_trail(small, settings_overrides) == before
    assert client.get(f"{MODELS}/{model['id']}/versions", headers=ds).json["items"] == []


def _multipart(disposition: str, content: bytes) -> tuple[bytes, str]:
    """A one-part multipart body written by hand, as the test client would not write it; and its content type."""
    boundary = "modelyard-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode() + content
            + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def model(client, ds):
    return create_model(client, ds, "churn")


def _uploads(model_id: str) -> dict[str, tuple[str, str]]:
    """Each upload endpoint, with the name of its file part."""
    return {"version": (f"{MODELS}/{model_id}/versions", "artifact"), "dataset": ("/api/v1/datasets", "file")}


@pytest.mark.parametrize("upload", ["version", "dataset"])
def test_a_file_part_sent_as_a_plain_form_field_is_422_naming_it(app, client, ds, model, settings_overrides, upload):
    url, part = _uploads(model["id"])[upload]
    before = write_trail(app, settings_overrides)
    response = client.post(url, data={part: "a,b\n1,2\n"}, headers=ds, content_type="multipart/form-data")
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert "file part" in response.json["errors"][part][0]
    assert write_trail(app, settings_overrides) == before


@pytest.mark.parametrize("upload", ["version", "dataset"])
@pytest.mark.parametrize("filename", ['filename="a\r\nX-Injected: 1.csv"', "filename*=UTF-8''a%0D%0AX-Injected%3A%201.csv",
                                      "filename*=UTF-8''a%0Ab.csv"])
def test_a_file_name_holding_a_line_break_is_422_naming_the_part(app, client, ds, model, settings_overrides, upload,
                                                                  filename):
    url, part = _uploads(model["id"])[upload]
    body, content_type = _multipart(f'name="{part}"; {filename}', b"a,b\n1,2\n")
    before = write_trail(app, settings_overrides)
    response = client.post(url, data=body, headers=ds, content_type=content_type)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == [part]
    assert write_trail(app, settings_overrides) == before


def _wide_csv(columns: int) -> bytes:
    return (",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("1" * columns) + "\n").encode()


def test_a_csv_of_a_million_columns_is_refused_within_seconds_naming_the_limit(app, client, ds, settings_overrides):
    content = _wide_csv(1_000_000)
    assert len(content) > 9 * MiB
    before = write_trail(app, settings_overrides)
    started = time.perf_counter()
    response = upload_csv(client, ds, content)
    elapsed = time.perf_counter() - started
    assert response.status_code == 422
    assert "at most 10000" in response.json["errors"]["file"][0]
    # About 0.3 s on a shared 2-core machine; the quadratic repeat check took hours.
    assert elapsed < 5
    assert write_trail(app, settings_overrides) == before
    assert client.get("/api/v1/datasets", headers=ds).json["items"] == []


def test_a_training_data_file_wider_than_the_limit_is_422_naming_the_path(app, client, ds, settings_overrides):
    data_root = Path(settings_overrides["data_root"])
    data_root.mkdir(parents=True, exist_ok=True)
    (data_root / "wide.csv").write_bytes(_wide_csv(10_001))
    model = create_model(client, ds, type="classification", target_variable="c0")
    before = write_trail(app, settings_overrides)
    response = client.post(f"{MODELS}/{model['id']}/trainings", headers=ds,
                           json={"training_data_path": "wide.csv", "estimator": "logistic_regression"})
    assert response.status_code == 422, response.json
    assert "at most 10000" in response.json["errors"]["training_data_path"][0]
    assert write_trail(app, settings_overrides) == before
    assert client.get(f"{MODELS}/{model['id']}/trainings", headers=ds).json["items"] == []
