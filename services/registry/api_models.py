"""HTTP views for models and their aliases: parse, call one use case, serialise."""

from __future__ import annotations

import uuid

from flask import Response, jsonify
from marshmallow import RAISE

from services.registry import aliases, models_service
from services.registry.schemas import (
    AliasBodySchema, AliasSchema, ModelCreateSchema, ModelListArgs, ModelPatchSchema, ModelSchema,
)
from shared.auth import current_actor, requires
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
        return models_service.list_models(session=db_session(), **args)

    @requires("data_scientist")
    @blp.arguments(ModelCreateSchema)
    @blp.response(201, ModelSchema)
    def post(self, body):
        """Register a model."""
        return models_service.create_model(**_writer(), **body)


@blp.route("/<uuid:model_id>")
class ModelItem(MethodView):
    @requires("viewer")
    @blp.response(200, ModelSchema)
    def get(self, model_id: uuid.UUID):
        """A model with its latest version number and aliases (served from the cache)."""
        body = runtime().cache.get_or_load(
            models_service.model_cache_key(model_id),
            lambda: ModelSchema().dump(models_service.get_model(session=db_session(), model_id=model_id)),
        )
        return jsonify(body)

    @requires("data_scientist")
    @blp.arguments(ModelPatchSchema)
    @blp.response(200, ModelSchema)
    def patch(self, body, model_id: uuid.UUID):
        """Change a model's description, tags, metadata, features ... or status (lifecycle permitting)."""
        return models_service.update_model(**_writer(), cache=runtime().cache, model_id=model_id, changes=body)

    @requires("admin")
    @blp.response(204)
    def delete(self, model_id: uuid.UUID):
        """Delete a model with its versions and aliases (admins only)."""
        models_service.delete_model(**_writer(), cache=runtime().cache, model_id=model_id)
        return Response(status=204)


@blp.route("/<uuid:model_id>/archive")
class ModelArchive(MethodView):
    @requires("data_scientist")
    @blp.response(200, ModelSchema)
    def post(self, model_id: uuid.UUID):
        """Archive a model (from any status); restore it with PATCH status=registered."""
        return models_service.archive_model(**_writer(), cache=runtime().cache, model_id=model_id)


@blp.route("/<uuid:model_id>/aliases/<string:alias>")
class ModelAliasItem(MethodView):
    @requires("viewer")
    @blp.response(200, AliasSchema)
    def get(self, model_id: uuid.UUID, alias: str):
        """The version an alias points at."""
        return aliases.get_alias(session=db_session(), model_id=model_id, alias=alias)

    @requires("data_scientist")
    @blp.arguments(AliasBodySchema)
    @blp.response(200, AliasSchema)
    def put(self, body, model_id: uuid.UUID, alias: str):
        """Point an alias (e.g. champion) at a version, creating or moving it."""
        return aliases.set_alias(**_writer(), cache=runtime().cache, model_id=model_id, alias=alias,
                                 version=body["version"])

    @requires("data_scientist")
    @blp.response(204)
    def delete(self, model_id: uuid.UUID, alias: str):
        """Remove an alias; the version stays."""
        aliases.remove_alias(**_writer(), cache=runtime().cache, model_id=model_id, alias=alias)
        return Response(status=204)
