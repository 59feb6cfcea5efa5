"""HTTP views for models and their aliases: parse, call one use case, serialise."""

from __future__ import annotations

from flask import Response, jsonify
from marshmallow import RAISE

from services.registry import aliases, models
from services.registry.schemas import (
    AliasBodySchema, ModelCreateSchema, ModelListArgs, ModelPatchSchema, ModelSchema, VersionSchema,
)
from shared.auth import current_actor, requires
from shared.idempotency import idempotent
from shared.pagination import page_schema
from shared.web import Blueprint, MethodView, db_session, request_id, runtime

blp = Blueprint("registry_models", __name__, url_prefix="/api/v1/models", description="Registered models")


def _writer() -> dict:
    """The keyword arguments every write use case takes from the request's edge."""
    return {"session": db_session(), "actor": current_actor(), "request_id": request_id()}


@blp.route("")
class Models(MethodView):
    @requires("viewer")
    @blp.arguments(ModelListArgs, location="query", unknown=RAISE)
    @blp.response(200, page_schema(ModelSchema))
    def get(self, args):
        """List models; `q` searches name and description, `tag=key:value` may repeat."""
        return models.list_models(session=db_session(), **args)

    @requires("data_scientist")
    @idempotent
    @blp.arguments(ModelCreateSchema)
    @blp.response(201, ModelSchema)
    def post(self, body):
        """Register a model."""
        return models.create_model(**_writer(), **body)


@blp.route("/<model:model_ref>")
class ModelItem(MethodView):
    @requires("viewer")
    @blp.response(200, ModelSchema)
    def get(self, model_ref: str):
        """A model, by id or name, with its latest version number and aliases (served from the cache)."""
        return jsonify(models.cached_model(sessions=db_session, cache=runtime().cache, model_ref=model_ref,
                                                   render=lambda model: ModelSchema().dump(model)))

    @requires("data_scientist")
    @blp.arguments(ModelPatchSchema)
    @blp.response(200, ModelSchema)
    def patch(self, body, model_ref: str):
        """Change a model's description, tags, metadata, features ... or status (lifecycle permitting)."""
        return models.update_model(**_writer(), cache=runtime().cache, model_ref=model_ref, changes=body)

    @requires("admin")
    @blp.response(204)
    def delete(self, model_ref: str):
        """Delete a model with its versions and aliases (admins only)."""
        models.delete_model(**_writer(), cache=runtime().cache, model_ref=model_ref)
        return Response(status=204)


@blp.route("/<model:model_ref>/archive")
class ModelArchive(MethodView):
    @requires("data_scientist")
    @blp.response(200, ModelSchema)
    def post(self, model_ref: str):
        """Archive a model (from any status); restore it with PATCH status=registered."""
        return models.archive_model(**_writer(), cache=runtime().cache, model_ref=model_ref)


@blp.route("/<model:model_ref>/aliases/<string:alias>")
class ModelAliasItem(MethodView):
    @requires("viewer")
    @blp.response(200, VersionSchema)
    def get(self, model_ref: str, alias: str):
        """The version an alias points at, as `GET .../versions/<number>` answers it."""
        return aliases.resolve_alias(session=db_session(), model_ref=model_ref, alias=alias)

    @requires("data_scientist")
    @blp.arguments(AliasBodySchema)
    @blp.response(200, VersionSchema)
    def put(self, body, model_ref: str, alias: str):
        """Point an alias (e.g. champion) at a version, creating or moving it; answers with that version."""
        return aliases.set_alias(**_writer(), cache=runtime().cache, model_ref=model_ref, alias=alias,
                                 version=body["version"])

    @requires("data_scientist")
    @blp.response(204)
    def delete(self, model_ref: str, alias: str):
        """Remove an alias; the version stays."""
        aliases.remove_alias(**_writer(), cache=runtime().cache, model_ref=model_ref, alias=alias)
        return Response(status=204)
