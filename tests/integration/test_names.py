"""Names that look alike are one name: NFC-normalised where they are stored and looked up; characters that
hide or reorder text are refused, naming the field."""

from __future__ import annotations

import io
import unicodedata
from urllib.parse import quote

import pytest

from services.identity.users import ensure_admin
from tests.support.auth import PASSWORD, headers_for, make_user
from tests.support.registry import model_body

pytestmark = pytest.mark.integration

NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")

HIDDEN = {
    "right-to-left override": "invoice\u202etxt.exe",
    "isolate": "a\u2066b\u2069",
    "zero-width space": "pay\u200bpal",
    "zero-width joiner": "a\u200db",
    "word joiner": "a\u2060b",
    "byte order mark": "\ufeffname",
    "carriage return": "a\rb",
    "line feed": "a\nb",
    "escape": "a\x1b[31mb",
}


def test_cafe_in_nfc_and_in_nfd_is_one_model_found_by_either_spelling(client, ds):
    assert NFC != NFD
    first = client.post("/api/v1/models", json=model_body(NFD), headers=ds)
    assert first.status_code == 201 and first.json["name"] == NFC
    second = client.post("/api/v1/models", json=model_body(NFC), headers=ds)
    assert second.status_code == 409 and "name" in second.json["errors"]
    for spelling in (NFC, NFD):
        found = client.get(f"/api/v1/models/{quote(spelling)}", headers=ds)
        assert found.status_code == 200 and found.json["id"] == first.json["id"]
    assert [m["name"] for m in client.get("/api/v1/models", headers=ds).json["items"]] == [NFC]


@pytest.mark.parametrize("name", HIDDEN.values(), ids=HIDDEN.keys())
def test_a_model_name_hiding_or_reordering_text_is_refused_naming_the_field(client, ds, name):
    response = client.post("/api/v1/models", json=model_body(name), headers=ds)
    assert response.status_code == 422 and list(response.json["errors"]) == ["name"]
    assert client.get("/api/v1/models", headers=ds).json["items"] == []


def test_a_user_named_in_nfd_is_the_user_named_in_nfc_and_logs_in_by_either(app, client):
    admin = headers_for(app, "admin")
    created = client.post("/api/v1/users", json={"username": NFD, "password": PASSWORD, "role": "viewer"},
                          headers=admin)
    assert created.status_code == 201 and created.json["username"] == NFC
    again = client.post("/api/v1/users", json={"username": NFC, "password": PASSWORD, "role": "viewer"},
                        headers=admin)
    assert again.status_code == 409
    for spelling in (NFC, NFD):
        login = client.post("/api/v1/auth/token", json={"username": spelling, "password": PASSWORD})
        assert login.status_code == 200, login.json


def test_users_api_keys_and_datasets_refuse_hidden_characters_and_write_nothing(app, client):
    user, headers = make_user(app, "admin")
    bidi = HIDDEN["right-to-left override"]
    user_response = client.post("/api/v1/users", json={"username": bidi, "password": PASSWORD, "role": "viewer"},
                                headers=headers)
    assert user_response.status_code == 422 and list(user_response.json["errors"]) == ["username"]
    key = client.post("/api/v1/auth/api-keys", json={"name": HIDDEN["zero-width space"], "role": "viewer"},
                      headers=headers)
    assert key.status_code == 422 and list(key.json["errors"]) == ["name"]
    dataset = client.post("/api/v1/datasets", data={"file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv"),
                                                    "name": HIDDEN["byte order mark"]},
                          headers=headers, content_type="multipart/form-data")
    assert dataset.status_code == 422 and list(dataset.json["errors"]) == ["name"]
    assert [u["username"] for u in client.get("/api/v1/users", headers=headers).json["items"]] == [user.username]
    assert client.get("/api/v1/auth/api-keys", headers=headers).json["items"] == []
    assert client.get("/api/v1/datasets", headers=headers).json["items"] == []


def test_a_dataset_named_in_nfd_is_found_by_its_nfc_name(client, ds):
    created = client.post("/api/v1/datasets", data={"file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv"), "name": NFD},
                          headers=ds, content_type="multipart/form-data")
    assert created.status_code == 201 and created.json["name"] == NFC
    listed = client.get("/api/v1/datasets", query_string={"name": NFD}, headers=ds).json["items"]
    assert [d["id"] for d in listed] == [created.json["id"]]


def test_a_first_admin_configured_in_nfd_logs_in_by_either_spelling(app, client):
    with app.extensions["modelyard"].db.transaction() as session:
        user, created = ensure_admin(session=session, username=NFD, password=PASSWORD)
    assert created and user.username == NFC
    for spelling in (NFC, NFD):
        assert client.post("/api/v1/auth/token", json={"username": spelling, "password": PASSWORD}).status_code == 200
