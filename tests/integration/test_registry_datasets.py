"""Datasets over HTTP: CSV upload with an inferred schema, one stored copy per content, bad files refused,
download, and a delete that lineage can refuse."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.registry.handlers import TrainingOutcomes
from services.registry.lineage import add_lineage_edge
from services.registry.versions import VersionDetails, register_version
from shared.audit import AuditEntry
from shared.auth import Actor
from shared.config import load_settings
from shared.errors import ValidationFailed
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from tests.support.registry import bearer, create_model, upload_csv, upload_version

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


def test_infinities_in_a_csv_are_counted_in_its_schema_and_never_answered_as_numbers(client, ds):
    # Every spelling pandas reads as infinity or as a missing value; 1e999 is past a float's range.
    csv = (b"x,y,z\n"
           b"1.5,inf,-nan\n"
           b"-Infinity,1e999,1.#QNAN\n"
           b"2.5,-INF,NaN\n"
           b"+inf,4,3\n")
    response = upload_csv(client, ds, csv)
    assert response.status_code == 201, response.json
    schema = {column["name"]: column for column in response.json["schema"]}
    assert {name: (c["dtype"], c["min"], c["max"], c["infinite"], c["nulls"]) for name, c in schema.items()} == {
        "x": ("float", 1.5, 2.5, 2, 0), "y": ("float", 4.0, 4.0, 3, 0), "z": ("integer", 3, 3, 0, 3)}
    # The autouse strict-JSON check fails this test if the schema, or a list holding it, has Infinity.
    assert client.get(f"/api/v1/datasets/{response.json['id']}", headers=ds).json == response.json
    assert client.get("/api/v1/datasets", headers=ds).json["items"] == [response.json]


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


def test_a_datasets_csv_downloads_byte_for_byte_named_for_it_with_its_sha256_as_etag(app, client, ds):
    dataset = upload_csv(client, ds, CSV, name="customers").json
    url = f"/api/v1/datasets/{dataset['id']}/content"
    response = client.get(url, headers=bearer(app, "viewer"))
    assert response.status_code == 200
    assert response.data == CSV
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == "attachment; filename=customers.csv"
    assert response.headers["ETag"] == f'"{dataset["sha256"]}"'
    assert response.headers["Content-Length"] == str(len(CSV))
    not_modified = client.get(url, headers={**ds, "If-None-Match": f'"{dataset["sha256"]}"'})
    assert not_modified.status_code == 304 and not_modified.data == b""
    accented = upload_csv(client, ds, CSV, name="clientes é").json
    disposition = client.get(f"/api/v1/datasets/{accented['id']}/content", headers=ds).headers["Content-Disposition"]
    assert disposition == "attachment; filename=\"clientes e.csv\"; filename*=UTF-8''clientes%20%C3%A9.csv"
    assert client.get(f"/api/v1/datasets/{uuid.uuid4()}/content", headers=ds).status_code == 404


def test_a_dataset_a_version_names_cannot_be_deleted_until_that_version_is_gone(app, client, ds,
                                                                                 settings_overrides):
    admin = bearer(app, "admin", "root")
    model = create_model(client, ds, "churn")
    dataset = upload_csv(client, ds, CSV, name="customers").json
    upload_version(client, ds, model["id"], metadata={"dataset_id": dataset["id"]})
    url = f"/api/v1/datasets/{dataset['id']}"
    refused = client.delete(url, headers=admin)
    assert refused.status_code == 409 and refused.mimetype == "application/problem+json"
    assert "churn v1" in refused.json["detail"]
    assert client.get(url, headers=ds).status_code == 200

    assert client.delete("/api/v1/models/churn/versions/1", headers=admin).status_code == 204
    assert client.delete(url, headers=admin).status_code == 204
    assert client.get(url, headers=ds).status_code == 404
    assert client.get(f"{url}/content", headers=ds).status_code == 404
    assert client.delete(url, headers=admin).status_code == 404
    with app.extensions["modelyard"].db.transaction() as session:
        [event] = session.scalars(sa.select(OutboxEvent.envelope).where(OutboxEvent.type == "dataset.deleted")).all()
        [entry] = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "dataset.deleted")).all()
    assert event["payload"] == {"dataset_id": dataset["id"], "name": "customers", "sha256": dataset["sha256"],
                                "actor": "root"}
    assert (entry.actor, entry.before["sha256"], entry.after) == ("root", dataset["sha256"], None)
    # The bytes stay in the content-addressed store, where another dataset may share them.
    assert dataset["sha256"] in {blob.name for blob in _stored_blobs(settings_overrides)}


def test_a_dataset_another_service_linked_in_lineage_cannot_be_deleted(app, client, ds):
    dataset = upload_csv(client, ds, CSV).json
    with app.extensions["modelyard"].db.transaction() as session:
        add_lineage_edge(session=session, source_type="dataset", source_id=dataset["id"], target_type="ab_test",
                         target_id=uuid.uuid4(), relation="evaluation_data")
    refused = client.delete(f"/api/v1/datasets/{dataset['id']}", headers=bearer(app, "admin"))
    assert refused.status_code == 409 and "ab test" in refused.json["detail"]


@pytest.mark.parametrize("role", ["viewer", "data_scientist", "ml_engineer"])
def test_only_an_admin_deletes_a_dataset(app, client, ds, role):
    dataset = upload_csv(client, ds, CSV).json
    response = client.delete(f"/api/v1/datasets/{dataset['id']}", headers=bearer(app, role))
    assert response.status_code == 403
    assert client.get(f"/api/v1/datasets/{dataset['id']}", headers=ds).status_code == 200


def test_a_trained_version_whose_dataset_was_deleted_meanwhile_is_rejected(app, client, ds, settings_overrides):
    model = create_model(client, ds, "churn")
    dataset = upload_csv(client, ds, CSV).json
    assert client.delete(f"/api/v1/datasets/{dataset['id']}", headers=bearer(app, "admin")).status_code == 204
    job_id = str(uuid.uuid4())
    completed = build_envelope("training.completed", {
        "job_id": job_id, "model_id": model["id"], "artifact_sha256": "0" * 64, "dataset_id": dataset["id"],
        "dataset_sha256": dataset["sha256"], "parent_version": None, "estimator": "logistic_regression",
        "best_params": {}, "cv_metrics": {}, "test_metrics": {}, "code_version": "test", "random_state": 0,
        "library_versions": {}, "profile": {}, "actor": "dana"}, producer="training")
    process(app.extensions["modelyard"].db, TrainingOutcomes(load_settings(settings_overrides)), completed)
    with app.extensions["modelyard"].db.transaction() as session:
        [rejected] = session.scalars(sa.select(OutboxEvent.envelope)
                                     .where(OutboxEvent.type == "model_version.rejected")).all()
    assert rejected["payload"]["training_job_id"] == job_id and dataset["id"] in rejected["payload"]["reason"]
    assert client.get("/api/v1/models/churn", headers=ds).json["latest_version"] is None


def test_a_dataset_deleted_while_a_version_naming_it_uploads_leaves_one_or_the_other(app, client, ds):
    """Postgres makes the delete wait for the registration (then 409); SQLite has no row locks, so the
    delete goes first and the registration, looking again under the model's lock, is refused (422)."""
    dataset = upload_csv(client, ds, b"a,b\n1,2\n3,4\n", name="racing").json
    model = create_model(client, ds, "racer")
    rt = app.extensions["modelyard"]
    deleted: dict[str, int] = {}

    def delete_dataset() -> None:
        response = app.test_client().delete(f"/api/v1/datasets/{dataset['id']}", headers=bearer(app, "admin"))
        deleted["status"] = response.status_code

    class DeleteMidUpload(io.BytesIO):
        """An upload during which an admin deletes the dataset."""

        thread: threading.Thread | None = None

        def read(self, *args):
            if self.thread is None:
                self.thread = threading.Thread(target=delete_dataset)
                self.thread.start()
                self.thread.join(timeout=1)  # Postgres: still waiting for the registration's lock
            return super().read(*args)

    upload = DeleteMidUpload(b"model bytes")
    actor = Actor(id=str(uuid.uuid4()), name="dana", role="data_scientist", via="token")
    try:
        with rt.db.transaction() as session:
            register_version(session=session, cache=rt.cache, artifacts=rt.artifacts, actor=actor, request_id="race",
                             model_ref=uuid.UUID(model["id"]),
                             details=VersionDetails(dataset_id=uuid.UUID(dataset["id"])), artifact_stream=upload)
        registered = True
    except ValidationFailed as refused:
        assert refused.errors == {"dataset_id": ["No such dataset."]}
        registered = False
    upload.thread.join(timeout=30)
    versions = client.get(f"/api/v1/models/{model['id']}/versions", headers=ds).json["items"]
    dataset_found = client.get(f"/api/v1/datasets/{dataset['id']}", headers=ds).status_code
    if registered:
        assert (deleted["status"], dataset_found) == (409, 200)
        assert [v["dataset_id"] for v in versions] == [dataset["id"]]
    else:
        assert (deleted["status"], dataset_found, versions) == (204, 404, [])
