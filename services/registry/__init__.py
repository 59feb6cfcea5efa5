"""Registry service: models, versions, aliases, datasets, artifacts and lineage."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from services.registry import api_datasets, api_models, api_versions
from services.registry.schemas import VersionFromArtifactSchema, VersionUploadSchema
from shared.config import Settings
from shared.web import Runtime, create_service_app


def register(api: Api, rt: Runtime) -> None:
    """Mount the registry's routes (the all-in-one composition calls this too)."""
    # Referenced by name from the version upload's hand-written two-body requestBody.
    api.spec.components.schema("VersionUpload", schema=VersionUploadSchema)
    api.spec.components.schema("VersionFromArtifact", schema=VersionFromArtifactSchema)
    for blueprint in (api_models.blp, api_versions.blp, api_datasets.blp):
        api.register_blueprint(blueprint)


def create_app(settings: Settings | dict | None = None) -> Flask:
    return create_service_app("registry", [register], settings)
