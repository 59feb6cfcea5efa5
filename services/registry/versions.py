"""Use cases for model versions: register (numbered 1, 2, 3 per model, never reusing a number), read,
list, download, edit what lineage does not rest on, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from services.registry import lineage, status as lifecycle
from services.registry.artifact_checks import CheckedArtifact, check_and_store
from services.registry.tables import PROVENANCES, TRAINED, UPLOADED, Dataset, ModelVersion, RegisteredModel
from services.registry.models import PRODUCER, ModelRef, get_model, get_version, model_cache_key
from shared import audit
from shared.artifacts import ArtifactStore
from shared.auth import Actor
from shared.cache import Cache
from shared.db import utcnow
from shared.errors import Conflict, ValidationFailed
from shared.events.outbox import emit
from shared.pagination import Page, Sorting, paginate
from shared.served_model import NUMERIC, feature_kinds

VERSION_SORTING = Sorting(
    columns={"number": ModelVersion.number, "created_at": ModelVersion.created_at},
    tiebreaker=ModelVersion.number,  # unique within the one model a list is always scoped to
    default="-number",
)


@dataclass(frozen=True)
class VersionDetails:
    """What a caller says about a new version besides its bytes."""

    description: str = ""
    parameters: dict[str, Any] | None = None
    metrics: dict[str, float] | None = None
    tags: dict[str, str] | None = None
    dataset_id: uuid.UUID | None = None
    parent_version: int | None = None
    training_job_id: uuid.UUID | None = None
    code_version: str | None = None
    flavor: str | None = None
    # For data that is not a registered dataset (a training's training_data_path): its digest alone.
    dataset_sha256: str | None = None
    # The training data's profile, stored with the version as the drift reference.
    profile: dict[str, Any] | None = None
    # The training features' reference sample for drift (trained versions).
    reference_sha256: str | None = None
    reference_rows: int | None = None
    feature_importances: dict[str, float] | None = None
    # The format the uploader says the artifact has; "skops" has it checked (the version records the
    # format the registry found).
    format: str | None = None


def _check_references(session: Session, model_ref: ModelRef, details: VersionDetails) -> RegisteredModel:
    """The model; refuse an archived model or a dataset/parent that does not exist, before any bytes are stored."""
    model = get_model(session=session, model_ref=model_ref)
    if model.status == lifecycle.ARCHIVED:
        raise Conflict(f"Model {model.name!r} is archived; restore it before registering versions.")
    if details.dataset_id is not None:
        _dataset(session, details.dataset_id)
    if details.parent_version is not None:
        _parent_id(session, model, details.parent_version)
    return model


def _dataset(session: Session, dataset_id: uuid.UUID) -> Dataset:
    # Key-share locked on Postgres to the end of the registration: a delete of the dataset waits, then sees
    # this version. SQLite has no row locks, so the registration looks it up again under the model's lock.
    dataset = session.scalar(sa.select(Dataset).where(Dataset.id == dataset_id)
                             .with_for_update(read=True, key_share=True))
    if dataset is None:
        raise ValidationFailed(f"No dataset with id {dataset_id}.", errors={"dataset_id": ["No such dataset."]})
    return dataset


def _parent_id(session: Session, model: RegisteredModel, number: int) -> uuid.UUID:
    parent_id = session.scalar(sa.select(ModelVersion.id).where(ModelVersion.model_id == model.id,
                                                                ModelVersion.number == number))
    if parent_id is None:
        raise ValidationFailed(f"Model {model.name!r} has no version {number}.",
                               errors={"parent_version": ["No such version of this model."]})
    return parent_id


def register_version(*, session: Session, cache: Cache, artifacts: ArtifactStore, actor: Actor, request_id: str,
                     model_ref: ModelRef, details: VersionDetails, artifact_stream: BinaryIO | None = None,
                     artifact_sha256: str | None = None, artifact_filename: str | None = None,
                     provenance: str = UPLOADED, allow_pickle: bool = False) -> ModelVersion:
    """Check and store the artifact (a stream, or a blob already stored) and register it as the model's next
    version; see artifact_checks for what is refused."""
    if (artifact_stream is None) == (artifact_sha256 is None):
        raise ValueError("pass exactly one of artifact_stream and artifact_sha256")
    if provenance not in PROVENANCES:
        raise ValueError(f"unknown provenance {provenance!r}")
    model = _check_references(session, model_ref, details)
    if provenance == TRAINED:
        # The training service saved it with skops, holding trusted types only, and loading checks them
        # again; reading it through still proves it intact.
        size = sum(len(chunk) for chunk in artifacts.iter_bytes(artifact_sha256))
        artifact = CheckedArtifact(artifact_sha256, size, "skops", loadable=True)
    else:
        artifact = check_and_store(artifacts=artifacts, allow_pickle=allow_pickle, filename=artifact_filename,
                                   declared_format=details.format, stream=artifact_stream, sha256=artifact_sha256)
    sha256, size = artifact.sha256, artifact.size
    # The row lock serialises concurrent registrations per model, so numbers never collide; it is
    # taken only after the (possibly long) upload so that uploads still run in parallel.
    model = get_model(session=session, model_ref=model.id, for_update=True)
    # Looked up again under the lock, before any write: the parent or the dataset may have been deleted
    # during the upload.
    parent_id = None if details.parent_version is None else _parent_id(session, model, details.parent_version)
    dataset = None if details.dataset_id is None else _dataset(session, details.dataset_id)
    number = model.version_counter + 1  # never a number a deleted version had
    version = ModelVersion(
        model_id=model.id, number=number, artifact_sha256=sha256, size=size, artifact_filename=artifact_filename,
        provenance=provenance, format=artifact.format, loadable=artifact.loadable, flavor=details.flavor,
        description=details.description,
        parameters=details.parameters or {}, metrics=details.metrics or {}, tags=details.tags or {},
        dataset_id=details.dataset_id, dataset_sha256=dataset.sha256 if dataset else details.dataset_sha256,
        profile=details.profile, reference_sha256=details.reference_sha256, reference_rows=details.reference_rows,
        feature_importances=details.feature_importances,
        parent_version=details.parent_version, training_job_id=details.training_job_id,
        code_version=details.code_version, created_by=actor.name, created_by_id=actor.id, created_at=utcnow(),
    )
    session.add(version)
    model.latest_version = model.version_counter = number
    model.updated_at = utcnow()
    session.flush()
    _link_lineage(session, version, details, parent_id)
    audit.record_change(session, actor=actor, action="model_version.registered", resource_type="model_version",
                        resource_id=version.id, request_id=request_id, before=None,
                        after={"model_id": str(model.id), "number": number, "artifact_sha256": sha256, "size": size,
                               "format": artifact.format,
                               "dataset_id": details.dataset_id, "parent_version": details.parent_version,
                               "training_job_id": details.training_job_id})
    emit(session, "model_version.registered", {
        "model_id": model.id, "version": number, "artifact_sha256": sha256, "dataset_id": details.dataset_id,
        "training_job_id": details.training_job_id, "actor": actor.name, "model_type": model.type,
        "metrics": version.metrics, "reference_sha256": details.reference_sha256,
        "reference_rows": details.reference_rows, "feature_kinds": _profiled_kinds(details.profile),
        "feature_importances": details.feature_importances, "bin_edges": profiled_bin_edges(details.profile),
    }, producer=PRODUCER)
    cache.invalidate_on_commit(session, model_cache_key(model.id))
    return version


def _profiled_kinds(profile: dict[str, Any] | None) -> dict[str, str] | None:
    return feature_kinds(profile, list(profile.get("features") or {})) if profile else None


def profiled_bin_edges(profile: dict[str, Any] | None) -> dict[str, list[float]] | None:
    """Each numeric feature's decile bin edges in the training profile (services/training/profile.py). All
    of them, not only the sensitive ones: a feature may be marked sensitive after the version is registered."""
    if not profile:
        return None
    return {name: entry["bin_edges"] for name, entry in (profile.get("features") or {}).items()
            if (entry or {}).get("kind") == NUMERIC and entry.get("bin_edges")}


def _link_lineage(session: Session, version: ModelVersion, details: VersionDetails,
                  parent_id: uuid.UUID | None) -> None:
    if details.dataset_id is not None:
        lineage.add_lineage_edge(session=session, source_type="dataset", source_id=details.dataset_id,
                                 target_type="model_version", target_id=version.id, relation=lineage.TRAINING_DATA)
    if details.training_job_id is not None:
        lineage.add_lineage_edge(session=session, source_type="training_job", source_id=details.training_job_id,
                                 target_type="model_version", target_id=version.id, relation=lineage.TRAINING_JOB)
    if parent_id is not None:
        lineage.add_lineage_edge(session=session, source_type="model_version", source_id=parent_id,
                                 target_type="model_version", target_id=version.id, relation=lineage.PARENT)


def list_versions(*, session: Session, model_ref: ModelRef, limit: int, cursor: str | None = None,
                  sort: str | None = None) -> Page:
    """One page of the model's versions, newest first unless `sort` says otherwise."""
    model = get_model(session=session, model_ref=model_ref)
    statement = (sa.select(ModelVersion).where(ModelVersion.model_id == model.id)
                 .options(selectinload(ModelVersion.alias_rows)))
    return paginate(session, statement, sorting=VERSION_SORTING, limit=limit, cursor=cursor, sort=sort)


def version_lineage(*, session: Session, model_ref: ModelRef, number: int, direction: str = "both",
                    depth: int = 3) -> dict:
    """The `{root, nodes, edges}` lineage graph around version `number`."""
    version = get_version(session=session, model_ref=model_ref, number=number)
    return lineage.lineage_graph(session=session, version=version, direction=direction, depth=depth)


# Flavors that are also a file format. Others (MLflow's "sklearn", "pytorch" ...) name a library, not
# how its bytes are laid out, so they make no extension.
FORMAT_FLAVORS = ("skops", "onnx", "joblib", "pkl", "pt", "h5", "keras")


def download_name(version: ModelVersion) -> str:
    """`<model name>-v<number>.<format>`: skops for a model the platform trained, else the uploaded file's
    extension, else the version's flavor when it is a file format, and bin only when nothing says more."""
    if version.provenance == TRAINED:
        extension = "skops"
    else:
        flavor = version.flavor if version.flavor in FORMAT_FLAVORS else None
        extension = PurePath(version.artifact_filename or "").suffix.lstrip(".") or flavor or "bin"
    return f"{version.model.name}-v{version.number}.{extension}"


# ---- edits and deletes -------------------------------------------------------------------------

EDITABLE = ("description", "tags", "status")  # everything else is lineage, fixed once registered


def _edited(version: ModelVersion) -> dict[str, Any]:
    return {"number": version.number, "description": version.description, "tags": version.tags,
            "status": version.status}


def _refuse_while_aliased(version: ModelVersion, change: str, field: str) -> None:
    """A Conflict naming the aliases that point at the version: they must be moved first."""
    aliases = [row.alias for row in version.alias_rows]
    if aliases:
        named = ", ".join(repr(alias) for alias in aliases)
        which = f"the alias {named} points" if len(aliases) == 1 else f"the aliases {named} point"
        raise Conflict(f"Version {version.number} of model {version.model.name!r} cannot be {change}: {which} "
                       f"at it; move {'it' if len(aliases) == 1 else 'them'} to another version first.",
                       errors={field: [f"{which} at this version"]})


def update_version(*, session: Session, actor: Actor, request_id: str, model_ref: ModelRef, number: int,
                   changes: dict[str, Any]) -> ModelVersion:
    """Change a version's description, tags or status (ready | archived); archiving one an alias points at
    is a Conflict. The model's representation holds none of these, so it stays cached."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    version = get_version(session=session, model_ref=model_ref, number=number, for_update=True)
    if changes.get("status") == lifecycle.VERSION_ARCHIVED:
        _refuse_while_aliased(version, "archived", "status")
    before = _edited(version)
    for field, value in changes.items():
        setattr(version, field, value)
    after = _edited(version)
    diff = {field: after[field] for field in changes if before[field] != after[field]}
    if not diff:
        return version
    audit.record_change(session, actor=actor, action="model_version.updated", resource_type="model_version",
                        resource_id=version.id, request_id=request_id, before=before, after=after)
    emit(session, "model_version.updated", {"model_id": version.model_id, "version": version.number,
                                            "status": version.status, "changes": diff, "actor": actor.name},
         producer=PRODUCER)
    return version


def delete_version(*, session: Session, cache: Cache, actor: Actor, request_id: str, model_ref: ModelRef,
                   number: int) -> None:
    """Delete a version (refused while an alias points at it, or once it served traffic) with its lineage
    edges. Its number is never given again; the model's latest_version drops to the highest left. The
    artifact's blob stays: it is content-addressed, and other versions or datasets may share it."""
    version = get_version(session=session, model_ref=model_ref, number=number, for_update=True)
    _refuse_while_aliased(version, "deleted", "aliases")
    model = version.model
    served = lineage.traffic_served(session=session, version_id=version.id)
    if served:
        # What served predictions stays on record (monitoring and audits refer to it): archive it instead.
        raise Conflict(f"Version {version.number} of model {model.name!r} served traffic ({', '.join(served)}); "
                       "archive it instead of deleting it.", errors={"lineage": served})
    lineage.forget_model_versions(session=session, version_ids=[version.id])
    audit.record_change(session, actor=actor, action="model_version.deleted", resource_type="model_version",
                        resource_id=version.id, request_id=request_id,
                        before={**_edited(version), "model_id": str(model.id), "artifact_sha256": version.artifact_sha256,
                                "dataset_id": version.dataset_id, "parent_version": version.parent_version,
                                "training_job_id": version.training_job_id})
    emit(session, "model_version.deleted", {"model_id": model.id, "version": version.number,
                                            "artifact_sha256": version.artifact_sha256, "actor": actor.name},
         producer=PRODUCER)
    session.delete(version)
    session.flush()
    model.latest_version = session.scalar(sa.select(sa.func.max(ModelVersion.number))
                                          .where(ModelVersion.model_id == model.id))
    model.updated_at = utcnow()
    cache.invalidate_on_commit(session, model_cache_key(model.id))
