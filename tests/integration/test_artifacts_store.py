"""The artifact store as a service gets it (`runtime().artifacts`), seen through HTTP: uploads come
back byte for byte, are encrypted on disk, survive key rotation, and a tampered one is never served."""

import base64
import hashlib
import io
import os
from pathlib import Path

import pytest
from flask import Response, request
from flask_smorest import Blueprint

from launch.catalog import credentials
from shared.web import MULTIPART, accepts, create_service_app, runtime

pytestmark = pytest.mark.integration

PLAINTEXT = (b"weights of a model nobody may read at rest " * 60_000)[: (2 << 20) + 999]


def key_spec(kid: str, key: bytes) -> str:
    return f"{kid}:{base64.b64encode(key).decode()}"


def register_probe(api, rt):
    """A minimal upload/download pair standing in for the registry's artifact endpoints."""
    blueprint = Blueprint("artifact_probe", __name__)

    @blueprint.route("/probe/artifacts", methods=["POST"])
    @accepts(MULTIPART)
    def upload():
        blob = runtime().artifacts.put_stream(request.files["artifact"].stream)
        return {"sha256": blob.sha256, "size": blob.size, "key_id": blob.key_id, "created": blob.created}, 201

    @blueprint.route("/probe/artifacts/<sha256>")
    def download(sha256):
        return Response(runtime().artifacts.iter_bytes(sha256), mimetype="application/octet-stream",
                        headers={"ETag": f'"{sha256}"'})

    api.register_blueprint(blueprint)


def client_for(settings_overrides, **overrides):
    return create_service_app("artifact-probe", [register_probe], {**settings_overrides, **overrides},
                              credentials=credentials()).test_client()


def upload(client, data: bytes):
    return client.post("/probe/artifacts", data={"artifact": (io.BytesIO(data), "model.onnx")},
                       content_type=MULTIPART)


def stored_file(settings_overrides, sha256: str) -> Path:
    return Path(settings_overrides["artifact_root"]) / sha256[:2] / sha256[2:4] / sha256


def test_an_uploaded_artifact_downloads_byte_for_byte_and_is_encrypted_on_disk(settings_overrides):
    client = client_for(settings_overrides)
    created = upload(client, PLAINTEXT)
    assert created.status_code == 201
    sha256 = hashlib.sha256(PLAINTEXT).hexdigest()
    assert created.json == {"sha256": sha256, "size": len(PLAINTEXT), "key_id": "k1", "created": True}
    download = client.get(f"/probe/artifacts/{sha256}")
    assert download.status_code == 200
    assert download.headers["ETag"] == f'"{sha256}"'
    assert download.data == PLAINTEXT
    on_disk = stored_file(settings_overrides, sha256).read_bytes()
    assert b"weights of a model" not in on_disk
    assert upload(client, PLAINTEXT).json["created"] is False


def test_a_tampered_artifact_is_refused_with_an_integrity_error_and_none_of_its_bytes(settings_overrides):
    client = client_for(settings_overrides)
    sha256 = upload(client, PLAINTEXT).json["sha256"]
    path = stored_file(settings_overrides, sha256)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # deep in the last chunk: the first chunks would still decrypt
    path.write_bytes(bytes(raw))
    response = client.get(f"/probe/artifacts/{sha256}")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.json["detail"] == f"artifact {sha256} failed its integrity check"
    assert b"weights of a model" not in response.data


def test_artifacts_stay_readable_after_a_new_key_becomes_current(settings_overrides):
    old_key = settings_overrides["artifact_keys"]
    before = client_for(settings_overrides)
    old_sha = upload(before, b"stored under the old key").json["sha256"]

    rotated = client_for(settings_overrides, artifact_keys=f"{key_spec('k2', os.urandom(32))},{old_key}")
    assert rotated.get(f"/probe/artifacts/{old_sha}").data == b"stored under the old key"
    assert upload(rotated, b"stored under the new key").json["key_id"] == "k2"


def test_an_unknown_or_malformed_address_is_404(settings_overrides):
    client = client_for(settings_overrides)
    for address in (hashlib.sha256(b"never stored").hexdigest(), "..%2F..%2Fetc%2Fpasswd", "A" * 64):
        response = client.get(f"/probe/artifacts/{address}")
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"


def test_a_service_starts_without_artifact_keys_and_refuses_only_to_store(settings_overrides, caplog):
    client = client_for(settings_overrides, artifact_keys="")
    assert client.get("/healthz").status_code == 200
    assert upload(client, b"model").status_code == 500
    assert "MODELYARD_ARTIFACT_KEYS" in caplog.text
