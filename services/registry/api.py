"""The registry's routes: models, versions (with aliases and lineage) and datasets."""

from __future__ import annotations

from flask_smorest import Api

from services.registry import api_datasets, api_models, api_versions
from services.registry.schemas import VersionFromArtifactSchema, VersionUploadSchema
from shared.web import Runtime


def register(api: Api, _rt: Runtime) -> None:
    """Mount the registry's routes (its manifest names this; the all-in-one app calls it too)."""
    # Referenced by name from the version upload's hand-written two-body requestBody.
    api.spec.components.schema("VersionUpload", schema=VersionUploadSchema)
    api.spec.components.schema("VersionFromArtifact", schema=VersionFromArtifactSchema)
    for blueprint in (api_models.blp, api_versions.blp, api_datasets.blp):
        api.register_blueprint(blueprint)
