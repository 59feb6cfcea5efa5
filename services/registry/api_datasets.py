"""HTTP views for datasets: CSV upload with schema inference, list, read, download, delete."""

from __future__ import annotations

import uuid

from flask import Response
from marshmallow import RAISE

from services.registry import datasets
from services.registry.downloads import send_blob
from services.registry.multipart import Blueprint
from services.registry.schemas import DatasetListArgs, DatasetSchema, DatasetUploadSchema
from shared.auth import current_actor, requires
from shared.idempotency import idempotent
from shared.pagination import page_schema
from shared.web import MULTIPART, MethodView, accepts, db_session, request_id, runtime

blp = Blueprint("registry_datasets", __name__, url_prefix="/api/v1/datasets", description="Training datasets")


@blp.route("")
class Datasets(MethodView):
    @requires("viewer")
    @blp.arguments(DatasetListArgs, location="query", unknown=RAISE)
    @blp.response(200, page_schema(DatasetSchema))
    def get(self, args):
        """List datasets, newest first; filter by exact `name` or `sha256`."""
        return datasets.list_datasets(session=db_session(), **args)

    @accepts(MULTIPART)
    @requires("data_scientist")
    @idempotent
    @blp.arguments(DatasetUploadSchema, location="multipart")
    @blp.response(201, DatasetSchema)
    @blp.alt_response(200, schema=DatasetSchema, description="These bytes were already registered under this name.")
    def post(self, body):
        """Upload a CSV (`file`, optional `name` and `description`); the schema is inferred from it."""
        upload = body["file"]
        dataset, created = datasets.register_dataset(
            session=db_session(), artifacts=runtime().artifacts, actor=current_actor(), request_id=request_id(),
            stream=upload.stream, name=body.get("name") or datasets.default_name(upload.filename),
            description=body.get("description", ""), max_columns=runtime().settings.max_csv_columns,
        )
        return dataset, 201 if created else 200


@blp.route("/<uuid:dataset_id>")
class DatasetItem(MethodView):
    @requires("viewer")
    @blp.response(200, DatasetSchema)
    def get(self, dataset_id: uuid.UUID):
        """One dataset with its inferred schema."""
        return datasets.get_dataset(session=db_session(), dataset_id=dataset_id)

    @requires("admin")
    @blp.response(204)
    def delete(self, dataset_id: uuid.UUID):
        """Delete a dataset (admins only) unless a version's lineage names it; its stored bytes stay."""
        datasets.delete_dataset(session=db_session(), actor=current_actor(), request_id=request_id(),
                                dataset_id=dataset_id)
        return Response(status=204)


@blp.route("/<uuid:dataset_id>/content")
class DatasetContent(MethodView):
    @requires("viewer")
    @blp.response(200, content_type="text/csv", description="The CSV's bytes, as uploaded.")
    @blp.alt_response(304, description="Not modified: the If-None-Match ETag is the CSV's sha256.")
    def get(self, dataset_id: uuid.UUID):
        """Download the CSV as `<dataset name>.csv`; ETag is its sha256, so If-None-Match answers 304 unread."""
        dataset = datasets.get_dataset(session=db_session(), dataset_id=dataset_id)
        return send_blob(artifacts=runtime().artifacts, sha256=dataset.sha256, size=dataset.size,
                         filename=f"{dataset.name}.csv", mimetype="text/csv")
