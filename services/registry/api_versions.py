"""HTTP views for model versions: upload, list, read, edit, delete, download the artifact, lineage."""

from __future__ import annotations

from flask import Response, request
from marshmallow import RAISE
from werkzeug.utils import secure_filename

from services.registry import models, versions
from services.registry.downloads import send_blob
from services.registry.tables import MAX_VERSION_NUMBER
from services.registry.models import LATEST
from services.registry.multipart import Blueprint
from services.registry.schemas import (
    LineageArgs, LineageSchema, VersionFromArtifactSchema, VersionPatchSchema, VersionSchema, VersionUploadSchema,
)
from shared.auth import current_actor, requires
from shared.idempotency import idempotent
from shared.pagination import ListArgs, page_schema
from shared.web import MULTIPART, MethodView, accepts, db_session, request_id, runtime

blp = Blueprint("registry_versions", __name__, url_prefix="/api/v1/models/<model:model_ref>/versions",
                description="Model versions, their artifacts and lineage")
parser = blp.ARGUMENTS_PARSER
# A number out of the column's range matches no route, so it is a 404 like any unknown version.
NUMBER = f"<int(min=1, max={MAX_VERSION_NUMBER}):number>"
# Each read of a version also has a `latest` route, which leaves `number` at its default (LATEST).
# Writes take the number only: a DELETE of `latest` sent twice would remove two versions.

# Two bodies for one endpoint, which flask-smorest's @arguments cannot express; the schemas are
# registered by name in register().
UPLOAD_BODY = {
    "required": True,
    "content": {
        MULTIPART: {"schema": {"$ref": "#/components/schemas/VersionUpload"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/VersionFromArtifact"}},
    },
}


def _parse_upload() -> dict:
    """The version's source and details from a multipart upload or a JSON body naming a stored artifact."""
    if request.mimetype == MULTIPART:
        body = parser.parse(VersionUploadSchema, location="multipart")
        upload = body["artifact"]
        return {"artifact_stream": upload.stream, "artifact_filename": secure_filename(upload.filename or "") or None,
                "details": versions.VersionDetails(**body["metadata"])}
    body = parser.parse(VersionFromArtifactSchema, location="json")
    return {"artifact_sha256": body.pop("artifact_id"), "details": versions.VersionDetails(**body)}


@blp.route("")
class Versions(MethodView):
    @requires("viewer")
    @blp.arguments(ListArgs, location="query", unknown=RAISE)
    @blp.response(200, page_schema(VersionSchema))
    def get(self, args, model_ref: str):
        """List a model's versions, newest first."""
        return versions.list_versions(session=db_session(), model_ref=model_ref, **args)

    @accepts(MULTIPART, "application/json")
    @requires("data_scientist")
    @idempotent
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(201, VersionSchema)
    def post(self, model_ref: str):
        """Register the next version: multipart `artifact` + `metadata`, or JSON with an `artifact_id`."""
        return versions.register_version(
            session=db_session(), cache=runtime().cache, artifacts=runtime().artifacts, actor=current_actor(),
            request_id=request_id(), model_ref=model_ref, allow_pickle=runtime().settings.allow_pickle,
            **_parse_upload(),
        )


@blp.route(f"/{LATEST}", methods=["GET"])
@blp.route(f"/{NUMBER}")
class VersionItem(MethodView):
    @requires("viewer")
    @blp.response(200, VersionSchema)
    def get(self, model_ref: str, number: int | str = LATEST):
        """One version (`latest`: the highest number that exists), with its lineage fields and aliases."""
        return models.get_version(session=db_session(), model_ref=model_ref, number=number)

    @requires("data_scientist")
    @blp.arguments(VersionPatchSchema)
    @blp.response(200, VersionSchema)
    def patch(self, body, model_ref: str, number: int):
        """Change a version's description, tags or status (ready | archived); its lineage fields are fixed."""
        return versions.update_version(session=db_session(), actor=current_actor(), request_id=request_id(),
                                       model_ref=model_ref, number=number, changes=body)

    @requires("admin")
    @blp.response(204)
    def delete(self, model_ref: str, number: int):
        """Delete a version (admins only) unless an alias points at it; its number is never reused."""
        versions.delete_version(session=db_session(), cache=runtime().cache, actor=current_actor(),
                                request_id=request_id(), model_ref=model_ref, number=number)
        return Response(status=204)


@blp.route(f"/{LATEST}/artifact")
@blp.route(f"/{NUMBER}/artifact")
class VersionArtifact(MethodView):
    @requires("viewer")
    @blp.response(200, content_type="application/octet-stream", description="The artifact's bytes.")
    @blp.alt_response(304, description="Not modified: the If-None-Match ETag is the artifact's sha256.")
    def get(self, model_ref: str, number: int | str = LATEST):
        """Download the artifact as `<model name>-v<number>.<format>`; ETag is its sha256, so If-None-Match
        answers 304 without reading it."""
        version = models.get_version(session=db_session(), model_ref=model_ref, number=number)
        return send_blob(artifacts=runtime().artifacts, sha256=version.artifact_sha256, size=version.size,
                         filename=versions.download_name(version), mimetype="application/octet-stream")


@blp.route(f"/{LATEST}/lineage")
@blp.route(f"/{NUMBER}/lineage")
class VersionLineage(MethodView):
    @requires("viewer")
    @blp.arguments(LineageArgs, location="query", unknown=RAISE)
    @blp.response(200, LineageSchema)
    def get(self, args, model_ref: str, number: int | str = LATEST):
        """Where the version came from (up), what derives from it (down), or both, to `depth` hops."""
        return versions.version_lineage(session=db_session(), model_ref=model_ref, number=number, **args)
