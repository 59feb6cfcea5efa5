"""The registry's reactions to training events: model status and features, and registering trained versions.

training.started moves the model to `training` (update_model remembers the status it left).
training.completed registers the trained artifact as the model's next version (provenance "trained",
with its full lineage and the data profile), then moves the model to `trained` (a deployed model
stays deployed) and, when the model has no features yet, gives it those the training used, in one
update. training.failed (also sent for a cancel) sends a model still `training` back to the status it
had before, or to `failed` when it never had a version; a model moved meanwhile, by a user or another
training, is left alone.

Two trainings of one model may overlap. The second training.started finds the model `training`
already, so the remembered status stays the one from before the first, and whichever training ends
first ends the model's `training`: the registry does not own training jobs, so it cannot count them.

A status move the lifecycle does not allow (e.g. a failed model whose training completes) is skipped with a
log line: an event about the past cannot be refused, and raising would only dead-letter it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.registry import lineage, models, status as lifecycle
from services.registry.tables import TRAINED, ModelVersion, RegisteredModel
from services.registry.versions import VersionDetails, register_version
from shared.artifacts import ArtifactStore
from shared.auth import Actor
from shared.cache import Cache
from shared.config import Settings, load_settings
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events.consumer import EventConsumer
from shared.events.outbox import emit

log = logging.getLogger(__name__)


def _actor(payload: dict[str, Any]) -> Actor:
    """The user who asked for the training: the registry acts on their behalf."""
    return Actor(id=payload.get("actor_id") or "", name=payload["actor"], role="data_scientist", via="event")


def _metrics(payload: dict[str, Any]) -> dict[str, float]:
    metrics = {f"test_{name}": value for name, value in payload["test_metrics"].items()}
    metrics.update(payload["cv_metrics"])
    # A metric that could not be computed (roc_auc with a class missing from the test split) is left out.
    return {name: float(value) for name, value in metrics.items() if value is not None}


def _tags(payload: dict[str, Any]) -> dict[str, str]:
    tags = {"estimator": payload["estimator"], "random_state": str(payload["random_state"])}
    tags.update({f"library.{name}": str(version) for name, version in payload["library_versions"].items()})
    if payload.get("training_data_path"):
        tags["training_data_path"] = payload["training_data_path"]
    return tags


def _after_start(model: RegisteredModel, payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": lifecycle.TRAINING}


def _after_completion(model: RegisteredModel, payload: dict[str, Any]) -> dict[str, Any]:
    # A deployed model stays deployed: its live version still serves, the new one waits for a deployment.
    changes: dict[str, Any] = {} if model.status == lifecycle.DEPLOYED else {"status": lifecycle.TRAINED}
    # Features a user gave stay; events from before the field existed carry none to give.
    if not model.features and payload.get("features"):
        changes["features"] = payload["features"]
    return changes


def _after_failure(model: RegisteredModel, payload: dict[str, Any]) -> dict[str, Any]:
    if model.status != lifecycle.TRAINING:
        return {}  # moved meanwhile, by a user or by an overlapping training: that move stands
    if model.version_counter == 0:  # never had a version (one since deleted still counts)
        return {"status": lifecycle.FAILED}
    # No remembered status only for a model that was training when migration 0006 added the column.
    return {"status": model.status_before_training or lifecycle.FAILED}


CHANGES_AFTER = {"training.started": _after_start, "training.completed": _after_completion,
                 "training.failed": _after_failure}


class TrainingOutcomes(EventConsumer):
    name = "registry.training"
    routing_keys = tuple(CHANGES_AFTER)

    def __init__(self, settings: Settings):
        self.artifacts = ArtifactStore.from_settings(settings)
        self.cache = Cache.from_settings(settings)

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        request_id = f"event:{envelope['id']}"
        model_id = uuid.UUID(str(payload["model_id"]))
        if envelope["type"] == "training.completed" and not self._register(session, payload, request_id, model_id):
            return
        try:
            model = models.get_model(session=session, model_ref=model_id, for_update=True)
        except NotFound:
            log.info("model %s is gone; training job %s changes nothing", model_id, payload["job_id"])
            return
        changes = CHANGES_AFTER[envelope["type"]](model, payload)
        status = changes.get("status")
        if status is not None and not lifecycle.allows(model.status, status):
            # The rest of the changes (a completed training's features) still apply.
            log.info("model %s stays %s after training job %s: the lifecycle does not allow %s",
                     model_id, model.status, payload["job_id"], status)
            del changes["status"]
        if changes:
            models.update_model(session=session, cache=self.cache, actor=_actor(payload),
                                        request_id=request_id, model_ref=model_id, changes=changes)

    def _register(self, session: Session, payload: dict[str, Any], request_id: str, model_id: uuid.UUID) -> bool:
        job_id = uuid.UUID(str(payload["job_id"]))
        if session.scalar(sa.select(ModelVersion.id).where(ModelVersion.training_job_id == job_id)) is not None:
            log.info("training job %s is registered already", job_id)
            return False
        details = VersionDetails(
            description=payload.get("description") or f"Trained by training job {job_id}.",
            parameters=payload["best_params"], metrics=_metrics(payload), tags=_tags(payload),
            dataset_id=uuid.UUID(str(payload["dataset_id"])) if payload.get("dataset_id") else None,
            dataset_sha256=payload["dataset_sha256"], parent_version=payload.get("parent_version"),
            training_job_id=job_id, code_version=payload.get("code_version"), flavor="skops",
            profile=payload["profile"], reference_sha256=payload.get("reference_sha256"),
            reference_rows=payload.get("reference_rows"), feature_importances=payload.get("feature_importances"),
        )
        try:
            register_version(session=session, cache=self.cache, artifacts=self.artifacts, actor=_actor(payload),
                             request_id=request_id, model_ref=model_id, details=details,
                             artifact_sha256=payload["artifact_sha256"], provenance=TRAINED)
        except (NotFound, Conflict, ValidationFailed) as exc:
            # The model was deleted or archived while it trained, or its dataset or parent version was
            # deleted: the version cannot be registered, and the training service must hear so, or its
            # job would wait for a version forever.
            log.warning("training job %s not registered: %s", job_id, exc.detail)
            emit(session, "model_version.rejected", {"model_id": model_id, "training_job_id": job_id,
                                                      "reason": exc.detail}, producer=models.PRODUCER)
            return False
        return True


def training_outcomes() -> TrainingOutcomes:
    """The consumer as `shared.events.runner` and the relay load it (settings from MODELYARD_*)."""
    return TrainingOutcomes(load_settings())


DEPLOYED_AS = "deployed_as"


class DeploymentOutcomes(EventConsumer):
    """A version's deployments join its lineage; the model is `deployed` while one of its versions is live.

    Whether a version is live is the deployment service's fact (each outcome event says whether any
    version of the model still is), so it is reported on the model whatever status it had, except
    archived: an archived model stays archived, and the next deployment of it is refused anyway. When
    none is live any more, a model still `deployed` goes back to `trained`.
    """

    name = "registry.deployment"
    routing_keys = ("deployment.started", "deployment.live", "deployment.failed", "deployment.rolled_back")

    def __init__(self, settings: Settings):
        self.cache = Cache.from_settings(settings)

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        model_id = uuid.UUID(str(payload["model_id"]))
        try:
            model = models.get_model(session=session, model_ref=model_id, for_update=True)
        except NotFound:
            log.info("model %s is gone; deployment %s changes nothing", model_id, payload["deployment_id"])
            return
        if envelope["type"] == "deployment.started":
            version = session.scalar(sa.select(ModelVersion).where(ModelVersion.model_id == model_id,
                                                                   ModelVersion.number == payload["version"]))
            if version is not None:
                lineage.add_lineage_edge(session=session, source_type="model_version", source_id=version.id,
                                         target_type="deployment", target_id=payload["deployment_id"],
                                         relation=DEPLOYED_AS)
            return
        if payload["model_live"]:
            status = lifecycle.DEPLOYED if model.status != lifecycle.ARCHIVED else model.status
        else:
            status = lifecycle.TRAINED if model.status == lifecycle.DEPLOYED else model.status
        if status != model.status:
            actor = Actor(id="", name=f"deployment {payload['deployment_id']}", role="ml_engineer", via="event")
            models.update_model(session=session, cache=self.cache, actor=actor, request_id=f"event:{envelope['id']}",
                                model_ref=model_id, changes={"status": status}, reported=True)


def deployment_outcomes() -> DeploymentOutcomes:
    return DeploymentOutcomes(load_settings())
