"""Datasets over HTTP: CSV upload with an inferred schema, one stored copy per content, bad files refused."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from tests.support.registry import upload_csv

pytestmark = pytest.mark.integration

CSV = (
    b"age,income,churned,signup,plan,score\n"
    b"34,52000.5,true,2024-01-03,basic,1\n"
    b"41,,false,2024-02-11T08:30:00,pro,\n"
    b"29,38000,TRUE,2023-12-30,basic,3\n"
)


def _stored_blobs(settings_overrides) -> list[Path]:
    root = Path(settings_overrides["artifact_root"])
    return [path for path in root.glob("??/??/*") if path.is_file()]


def test_an_uploaded_csv_gets_its_schema_inferred(client, ds):
    response = upload_csv(client, ds, CSV, filename="customers.csv", description="Q1 extract")
    assert response.status_code == 201, response.json
    dataset = response.json
    assert dataset["name"] == "customers"
    assert dataset["description"] == "Q1 extract"
    assert dataset["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert dataset["size"] == len(CSV)
    assert dataset["rows"] == 3 and dataset["columns"] == 6
    schema = {column["name"]: column for column in dataset["schema"]}
    assert {name: column["dtype"] for name, column in schema.items()} == {
        "age": "integer", "income": "float", "churned": "boolean", "signup": "datetime", "plan": "string",
        "score": "integer"}
    assert schema["income"]["nulls"] == 1 and schema["score"]["nulls"] == 1 and schema["age"]["nulls"] == 0
    assert (schema["age"]["min"], schema["age"]["max"]) == (29, 41)
    assert client.get(f"/api/v1/datasets/{dataset['id']}", headers=ds).json == dataset


def test_the_same_bytes_twice_give_one_stored_copy_and_the_same_sha256(client, ds, settings_overrides):
    first = upload_csv(client, ds, CSV, name="customers")
    again = upload_csv(client, ds, CSV, name="customers")
    assert first.status_code == 201
    assert again.status_code == 200  # same name and bytes: the dataset already registered
    assert again.json["id"] == first.json["id"]
    renamed = upload_csv(client, ds, CSV, name="customers-copy")
    assert renamed.status_code == 201 and renamed.json["id"] != first.json["id"]
    assert renamed.json["sha256"] == first.json["sha256"]
    assert len(_stored_blobs(settings_overrides)) == 1
    listed = client.get("/api/v1/datasets", headers=ds).json
    assert sorted(item["name"] for item in listed["items"]) == ["customers", "customers-copy"]
    by_digest = client.get("/api/v1/datasets", query_string={"sha256": first.json["sha256"], "name": "customers"},
                           headers=ds).json
    assert [item["id"] for item in by_digest["items"]] == [first.json["id"]]


@pytest.mark.parametrize("content", [
    b"",
    b"just,a,header\n",
    b"a,b\n1,2\n3\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8\xff",
    b"a,a\n1,2\n",
    b'a,b\n"unterminated,2\n',
])
def test_files_that_are_not_usable_csv_are_422_and_store_nothing(client, ds, settings_overrides, content):
    response = upload_csv(client, ds, content)
    assert response.status_code == 422
    assert "file" in response.json["errors"]
    assert _stored_blobs(settings_overrides) == []
    assert client.get("/api/v1/datasets", headers=ds).json["items"] == []


def test_upload_form_mistakes_are_named(client, ds):
    missing = client.post("/api/v1/datasets", data={"name": "x"}, headers=ds, content_type="multipart/form-data")
    assert missing.status_code == 422 and "file" in missing.json["errors"]
    assert upload_csv(client, ds, CSV, colour="blue").status_code == 422
    assert client.post("/api/v1/datasets", json={"name": "x"}, headers=ds).status_code == 415


def test_unknown_dataset_ids_are_404(client, ds):
    assert client.get(f"/api/v1/datasets/{uuid.uuid4()}", headers=ds).status_code == 404
    assert client.get("/api/v1/datasets/nope", headers=ds).status_code == 404


def test_datasets_page_newest_first(client, ds):
    for i in range(3):
        upload_csv(client, ds, f"a\n{i}\n".encode(), name=f"d{i}")
    page = client.get("/api/v1/datasets?limit=2", headers=ds).json
    assert [item["name"] for item in page["items"]] == ["d2", "d1"]
    rest = client.get("/api/v1/datasets", query_string={"limit": 2, "cursor": page["next_cursor"]}, headers=ds).json
    assert [item["name"] for item in rest["items"]] == ["d0"]
