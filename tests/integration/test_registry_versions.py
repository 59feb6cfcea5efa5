"""Model versions and aliases over HTTP: upload, numbering, download with ETag, tampering, aliases."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from services.registry.versions import VersionDetails, register_version
from shared.auth import Actor
from tests.support.registry import create_model, upload_csv, upload_version

pytestmark = pytest.mark.integration


@pytest.fixture
def model(client, ds):
    return create_model(client, ds, "churn")


def test_an_uploaded_version_downloads_byte_for_byte_with_its_sha256_as_etag(client, ds, model):
    data = bytes(range(256)) * 5000  # > 1 MiB: several store chunks
    response = upload_version(client, ds, model["id"], data, metadata={
        "description": "first", "parameters": {"C": 0.5}, "metrics": {"auc": 0.91}, "code_version": "abc123",
        "flavor": "skops", "tags": {"stage": "dev"}})
    assert response.status_code == 201, response.json
    version = response.json
    sha256 = hashlib.sha256(data).hexdigest()
    assert version["number"] == 1 and version["model_id"] == model["id"]
    assert version["artifact_sha256"] == sha256 and version["size"] == len(data)
    assert version["metrics"] == {"auc": 0.91} and version["parameters"] == {"C": 0.5}
    assert version["created_by"] == "dana" and version["provenance"] == "uploaded"

    url = f"/api/v1/models/{model['id']}/versions/1/artifact"
    download = client.get(url, headers=ds)
    assert download.status_code == 200
    assert download.data == data
    assert download.headers["ETag"] == f'"{sha256}"'
    assert download.headers["Content-Length"] == str(len(data))
    not_modified = client.get(url, headers={**ds, "If-None-Match": f'"{sha256}"'})
    assert not_modified.status_code == 304 and not_modified.data == b""
    changed = client.get(url, headers={**ds, "If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.data == data


def test_versions_are_numbered_one_two_three_and_update_the_model(client, ds, model):
    for expected in (1, 2, 3):
        response = upload_version(client, ds, model["id"], f"v{expected}".encode())
        assert response.json["number"] == expected
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["latest_version"] == 3
    listed = client.get(f"/api/v1/models/{model['id']}/versions?limit=2", headers=ds).json
    assert [v["number"] for v in listed["items"]] == [3, 2]
    rest = client.get(f"/api/v1/models/{model['id']}/versions", query_string={"limit": 2, "cursor": listed["next_cursor"]},
                      headers=ds).json
    assert [v["number"] for v in rest["items"]] == [1] and rest["next_cursor"] is None
    assert client.get(f"/api/v1/models/{model['id']}/versions/2", headers=ds).json["artifact_sha256"] == \
        hashlib.sha256(b"v2").hexdigest()
    # Another model counts from 1 on its own.
    other = create_model(client, ds, "other")
    assert upload_version(client, ds, other["id"]).json["number"] == 1


def test_concurrent_uploads_get_distinct_consecutive_numbers(app, ds, model):
    workers = 6
    barrier = threading.Barrier(workers)
    numbers, failures = [], []

    def upload(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = upload_version(client, ds, model["id"], f"concurrent {i}".encode())
        (numbers if response.status_code == 201 else failures).append(
            response.json["number"] if response.status_code == 201 else response.json)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(numbers) == list(range(1, workers + 1))


def test_a_version_can_reuse_an_already_stored_artifact_by_its_sha256(client, ds, model):
    first = upload_version(client, ds, model["id"], b"shared weights").json
    other = create_model(client, ds, "other")
    response = client.post(f"/api/v1/models/{other['id']}/versions",
                           json={"artifact_id": first["artifact_sha256"], "description": "promoted"}, headers=ds)
    assert response.status_code == 201, response.json
    assert response.json["size"] == len(b"shared weights")
    assert client.get(f"/api/v1/models/{other['id']}/versions/1/artifact", headers=ds).data == b"shared weights"
    missing = client.post(f"/api/v1/models/{other['id']}/versions", json={"artifact_id": "0" * 64}, headers=ds)
    assert missing.status_code == 422 and "artifact_id" in missing.json["errors"]
    malformed = client.post(f"/api/v1/models/{other['id']}/versions", json={"artifact_id": "../../etc/passwd"},
                            headers=ds)
    assert malformed.status_code == 422 and "artifact_id" in malformed.json["errors"]


def test_bad_version_uploads_are_refused_and_register_nothing(client, ds, model):
    url = f"/api/v1/models/{model['id']}/versions"
    no_file = client.post(url, data={"metadata": "{}"}, headers=ds, content_type="multipart/form-data")
    assert no_file.status_code == 422 and "artifact" in no_file.json["errors"]
    assert upload_version(client, ds, model["id"], metadata={"metrics": {"auc": "high"}}).status_code == 422
    assert upload_version(client, ds, model["id"], metadata={"surprise": 1}).status_code == 422
    bad_json = client.post(url, data={"artifact": (io.BytesIO(b"x"), "m.bin"), "metadata": "{oops"},
                           headers=ds, content_type="multipart/form-data")
    assert bad_json.status_code == 422 and "metadata" in bad_json.json["errors"]
    unknown_dataset = upload_version(client, ds, model["id"], metadata={"dataset_id": model["id"]})
    assert unknown_dataset.status_code == 422 and "dataset_id" in unknown_dataset.json["errors"]
    unknown_parent = upload_version(client, ds, model["id"], metadata={"parent_version": 7})
    assert unknown_parent.status_code == 422 and "parent_version" in unknown_parent.json["errors"]
    assert client.post(url, data="x", content_type="text/plain", headers=ds).status_code == 415
    assert client.get(url, headers=ds).json["items"] == []
    assert client.get(f"{url}/1", headers=ds).status_code == 404


def test_a_tampered_artifact_is_refused_with_an_integrity_error(client, ds, model, settings_overrides):
    version = upload_version(client, ds, model["id"], b"precious weights" * 1000).json
    sha256 = version["artifact_sha256"]
    blob = Path(settings_overrides["artifact_root"]) / sha256[:2] / sha256[2:4] / sha256
    raw = bytearray(blob.read_bytes())
    raw[-5] ^= 0x01
    blob.write_bytes(bytes(raw))
    response = client.get(f"/api/v1/models/{model['id']}/versions/1/artifact", headers=ds)
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("integrity-error")
    assert b"precious" not in response.data


def test_aliases_point_at_versions_and_move(client, ds, model):
    for data in (b"1", b"2"):
        upload_version(client, ds, model["id"], data)
    url = f"/api/v1/models/{model['id']}/aliases"
    set_one = client.put(f"{url}/champion", json={"version": 1}, headers=ds)
    assert set_one.status_code == 200
    assert (set_one.json["number"], set_one.json["aliases"]) == (1, ["champion"])
    client.put(f"{url}/challenger", json={"version": 2}, headers=ds)
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["aliases"] == {"challenger": 2, "champion": 1}
    assert client.get(f"/api/v1/models/{model['id']}/versions/2", headers=ds).json["aliases"] == ["challenger"]
    moved = client.put(f"{url}/champion", json={"version": 2}, headers=ds)
    assert (moved.json["number"], moved.json["aliases"]) == (2, ["challenger", "champion"])
    assert client.get(f"{url}/champion", headers=ds).json == moved.json
    assert client.get(f"/api/v1/models/{model['id']}/versions/2", headers=ds).json["aliases"] == ["challenger", "champion"]
    assert client.delete(f"{url}/challenger", headers=ds).status_code == 204
    assert client.get(f"{url}/challenger", headers=ds).status_code == 404
    assert client.delete(f"{url}/challenger", headers=ds).status_code == 404


def test_an_alias_answers_with_the_whole_version_it_points_at(client, ds, model):
    upload_version(client, ds, model["id"], b"weights", metadata={"metrics": {"auc": 0.9}})
    put = client.put("/api/v1/models/churn/aliases/champion", json={"version": 1}, headers=ds)
    version = client.get("/api/v1/models/churn/versions/1", headers=ds).json
    assert put.json == version
    assert client.get("/api/v1/models/churn/aliases/champion", headers=ds).json == version
    assert version["metrics"] == {"auc": 0.9} and version["aliases"] == ["champion"]


def test_latest_names_the_highest_existing_version_on_every_read(client, ds, model):
    url = f"/api/v1/models/{model['id']}/versions"
    empty = client.get(f"{url}/latest", headers=ds)
    assert empty.status_code == 404 and empty.mimetype == "application/problem+json"
    for data in (b"first", b"second"):
        upload_version(client, ds, model["id"], data)
    latest = client.get(f"{url}/latest", headers=ds)
    assert latest.status_code == 200 and latest.json == client.get(f"{url}/2", headers=ds).json
    assert client.get("/api/v1/models/churn/versions/latest", headers=ds).json["number"] == 2
    assert client.get(f"{url}/latest/artifact", headers=ds).data == b"second"
    assert client.get(f"{url}/latest/lineage", headers=ds).json["root"] == f"model_version:{latest.json['id']}"


@pytest.mark.parametrize("alias, body, field", [
    ("Champion", {"version": 1}, "alias"),
    ("9lives", {"version": 1}, "alias"),
    ("a" * 65, {"version": 1}, "alias"),
    ("champion", {"version": 9}, "version"),
    ("champion", {"version": "1"}, "version"),
    ("champion", {}, "version"),
])
def test_invalid_aliases_are_422_naming_the_field(client, ds, model, alias, body, field):
    upload_version(client, ds, model["id"])
    response = client.put(f"/api/v1/models/{model['id']}/aliases/{alias}", json=body, headers=ds)
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_a_version_records_its_dataset_by_id_and_digest(client, ds, model):
    dataset = upload_csv(client, ds, b"x,y\n1,2\n").json
    version = upload_version(client, ds, model["id"], metadata={"dataset_id": dataset["id"]}).json
    assert version["dataset_id"] == dataset["id"]
    assert version["dataset_sha256"] == dataset["sha256"]


def _saved_as(response) -> tuple[str, str | None]:
    """The (ASCII filename, filename* name) a client saving the download chooses between. (werkzeug's
    parser would fold the two into one, so the header is taken apart here.)"""
    disposition, *parameters = response.headers["Content-Disposition"].split("; ")
    assert disposition == "attachment"
    named = dict(parameter.split("=", 1) for parameter in parameters)
    encoded = named.get("filename*")
    return named["filename"].strip('"'), unquote(encoded.removeprefix("UTF-8''")) if encoded else None


def test_a_download_is_named_for_the_model_and_version_with_the_artifacts_format(app, client, ds, model):
    upload_version(client, ds, model["id"], b"onnx bytes", filename="exported.model.onnx")
    upload_version(client, ds, model["id"], b"flavored", filename="weights", metadata={"flavor": "sklearn"})
    upload_version(client, ds, model["id"], b"anonymous", filename="weights")
    client.post(f"/api/v1/models/{model['id']}/versions", json={"artifact_id": hashlib.sha256(b"flavored").hexdigest(),
                                                              "flavor": "onnx"}, headers=ds)
    rt = app.extensions["modelyard"]
    with rt.db.transaction() as session:
        register_version(session=session, cache=rt.cache, artifacts=rt.artifacts, request_id="test",
                         actor=Actor(id="", name="dana", role="data_scientist", via="event"),
                         model_ref=uuid.UUID(model["id"]), details=VersionDetails(),
                         artifact_sha256=hashlib.sha256(b"anonymous").hexdigest(), artifact_filename="model.pkl",
                         provenance="trained")
    names = [_saved_as(client.get(f"/api/v1/models/churn/versions/{n}/artifact", headers=ds)) for n in range(1, 6)]
    # "sklearn" names a library, not a file format: no extension comes of it.
    assert names == [("churn-v1.onnx", None), ("churn-v2.bin", None), ("churn-v3.bin", None),
                     ("churn-v4.onnx", None), ("churn-v5.skops", None)]
    latest = client.get("/api/v1/models/churn/versions/latest/artifact", headers=ds)
    assert _saved_as(latest) == ("churn-v5.skops", None)


def test_a_non_ascii_model_name_gives_an_ascii_filename_and_the_utf8_name_beside_it(client, ds):
    model = create_model(client, ds, 'modèle "模型"/prod')
    upload_version(client, ds, model["id"], b"weights", filename="m.onnx")
    response = client.get(f"/api/v1/models/{model['id']}/versions/1/artifact", headers=ds)
    assert response.status_code == 200 and response.data == b"weights"
    response.headers["Content-Disposition"].encode("ascii")  # a header value is ASCII, or no client reads it
    assert _saved_as(response) == ("modele _____prod-v1.onnx", "modèle _模型__prod-v1.onnx")
