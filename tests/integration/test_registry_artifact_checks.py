"""Artifacts are looked at before they become versions: pickles refused by their bytes, skops files
checked against the trusted list without loading, empty files refused, the rest kept as opaque bytes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from tests.support.registry import bearer, create_model, upload_version

pytestmark = pytest.mark.integration


class Exploit:
    """Runs a command when unpickled. The tests only ever dump it, never load it."""

    def __reduce__(self):
        return os.system, ("true",)


def exploit_pickle(protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps(Exploit(), protocol=protocol)


def padded_pickle() -> bytes:
    """Protocol 0 behind 32,768 harmless opcode pairs (push None, pop): past any fixed head."""
    return b"N0" * (1 << 15) + exploit_pickle(protocol=0)


def headerless_pickle() -> bytes:
    """Protocol 4 without its PROTO/FRAME header, behind MARK/POP_MARK pairs: still unpickles."""
    body = exploit_pickle(protocol=4)[11:]  # PROTO 4 (2 bytes) and FRAME with its length (9 bytes)
    return b"(1" * 5000 + body


def padded_zlib_pickle() -> bytes:
    return zlib.compress(padded_pickle())


def torch_like_zip() -> bytes:
    """A zip holding a pickle, as PyTorch saves a model (`archive/data.pkl`)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data.pkl", exploit_pickle(protocol=2))
    return out.getvalue()


def exploit_joblib(compress: str) -> bytes:
    out = io.BytesIO()
    joblib.dump({"model": Exploit(), "weights": np.arange(4)}, out, compress=(compress, 3))
    return out.getvalue()


def real_skops() -> bytes:
    return sio.dumps(LogisticRegression().fit([[3, 0], [40, 1], [12, 0], [1, 0]], [1, 0, 0, 1]))


def skops_naming(module: str, name: str) -> bytes:
    """A real skops file whose top object's type was rewritten to `module.name`."""
    with zipfile.ZipFile(io.BytesIO(real_skops())) as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__module__"], schema["__class__"] = module, name
    members["schema.json"] = json.dumps(schema).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return out.getvalue()


def stored_blobs(settings_overrides) -> list[Path]:
    return sorted(Path(settings_overrides["artifact_root"]).glob("??/??/*"))


@pytest.fixture
def model(client, ds):
    return create_model(client, ds, "churn")


def assert_nothing_registered(client, ds, model, settings_overrides):
    assert client.get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"] == []
    assert client.get(f"/api/v1/models/{model['id']}", headers=ds).json["latest_version"] is None
    assert stored_blobs(settings_overrides) == []


@pytest.mark.parametrize("data, filename", [
    (exploit_pickle(), "model.pkl"),
    (exploit_pickle(), "model.skops"),
    (exploit_pickle(protocol=0), "weights.bin"),
    (exploit_joblib("zlib"), "model.joblib"),
    (exploit_joblib("gzip"), "model.onnx"),
    (exploit_joblib("lzma"), "model"),
    (padded_pickle(), "weights.bin"),
    (headerless_pickle(), "weights.bin"),
    (padded_zlib_pickle(), "model.joblib"),
    (torch_like_zip(), "model.pt"),
], ids=["pkl", "renamed-skops", "protocol-0", "joblib-zlib", "joblib-gzip-renamed-onnx", "joblib-lzma-no-name",
        "padded-past-any-head", "headerless-protocol-4", "padded-zlib", "zip-holding-a-pickle"])
def test_a_pickle_that_calls_os_system_is_refused_by_its_bytes_whatever_its_name(
        client, ds, model, settings_overrides, data, filename):
    response = upload_version(client, ds, model["id"], data, filename=filename)
    assert response.status_code == 415, response.json
    assert response.mimetype == "application/problem+json"
    assert "artifact" in response.json["errors"] and "skops" in response.json["detail"]
    assert_nothing_registered(client, ds, model, settings_overrides)


def test_an_empty_artifact_is_refused_and_nothing_is_stored(client, ds, model, settings_overrides):
    response = upload_version(client, ds, model["id"], b"", filename="model.skops")
    assert response.status_code == 422
    assert response.json["errors"] == {"artifact": ["Must not be empty."]}
    assert_nothing_registered(client, ds, model, settings_overrides)


def test_a_skops_file_naming_posix_system_is_refused_listing_the_untrusted_type(client, ds, model, settings_overrides):
    response = upload_version(client, ds, model["id"], skops_naming("posix", "system"), filename="model.skops")
    assert response.status_code == 422, response.json
    assert "posix.system" in response.json["detail"]
    assert response.json["errors"] == {"artifact": ["Untrusted type: posix.system"]}
    assert_nothing_registered(client, ds, model, settings_overrides)


def test_a_file_declared_skops_must_be_a_skops_archive(client, ds, model, settings_overrides):
    response = upload_version(client, ds, model["id"], b"not a zip at all", filename="weights",
                              metadata={"format": "skops"})
    assert response.status_code == 422 and response.json["errors"] == {"artifact": ["Not a valid skops file."]}
    assert_nothing_registered(client, ds, model, settings_overrides)


def test_a_version_records_its_format_and_whether_the_platform_loads_it(client, ds, model):
    skops_version = upload_version(client, ds, model["id"], real_skops(), filename="model.skops")
    assert skops_version.status_code == 201, skops_version.json
    assert (skops_version.json["format"], skops_version.json["loadable"]) == ("skops", True)
    onnx = upload_version(client, ds, model["id"], b"\x08\x07protobuf", filename="model.onnx").json
    assert (onnx["format"], onnx["loadable"]) == ("onnx", False)
    opaque = upload_version(client, ds, model["id"], b"a,b\n1,2\n", filename="model.pkl").json  # named, not pickled
    assert (opaque["format"], opaque["loadable"]) == ("opaque", False)
    again = client.post(f"/api/v1/models/{model['id']}/versions", headers=ds,
                        json={"artifact_id": skops_version.json["artifact_sha256"]})  # no name says skops
    assert again.status_code == 201 and (again.json["format"], again.json["loadable"]) == ("skops", True)
    unclaimed = upload_version(client, ds, model["id"], skops_naming("posix", "system"), filename="bundle.zip").json
    assert (unclaimed["format"], unclaimed["loadable"]) == ("opaque", False)


def test_a_version_from_a_stored_artifact_gets_the_same_checks(app, client, ds, model):
    store = app.extensions["modelyard"].artifacts
    url = f"/api/v1/models/{model['id']}/versions"
    pickled = store.put_bytes(exploit_pickle()).sha256
    untrusted = store.put_bytes(skops_naming("os", "system")).sha256
    empty = store.put_bytes(b"").sha256
    assert client.post(url, json={"artifact_id": pickled}, headers=ds).status_code == 415
    refused = client.post(url, json={"artifact_id": untrusted, "format": "skops"}, headers=ds)
    assert refused.status_code == 422 and refused.json["errors"] == {"artifact_id": ["Untrusted type: os.system"]}
    assert client.post(url, json={"artifact_id": empty}, headers=ds).status_code == 422
    assert client.get(url, headers=ds).json["items"] == []
    assert store.exists(untrusted)  # a blob someone else stored is not the refusal's to delete


def test_pickle_is_kept_unloadable_when_the_operator_allows_it(make_app, settings_overrides, clean_db):
    app = make_app({**settings_overrides, "allow_pickle": True})
    client, ds = app.test_client(), bearer(app, "data_scientist", "dana")
    model = create_model(client, ds, "legacy")
    data = exploit_joblib("zlib")
    response = upload_version(client, ds, model["id"], data, filename="model.joblib")
    assert response.status_code == 201, response.json
    assert (response.json["format"], response.json["loadable"]) == ("joblib", False)
    assert response.json["artifact_sha256"] == hashlib.sha256(data).hexdigest()
