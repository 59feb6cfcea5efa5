"""The registry's reactions to training events: model status, and registering trained versions.

training.started moves the model to `training`, training.failed to `failed`, and training.completed
registers the trained artifact as the model's next version (provenance "trained", with its full
lineage and the data profile) and moves the model to `trained`. A status move the lifecycle does not
allow (e.g. a deployed model being retrained) is skipped with a log line: an event about the past
cannot be refused, and raising would only dead-letter it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.registry import models_service, status as lifecycle
from services.registry.models import ModelVersion
from services.registry.versions import VersionDetails, register_version
from shared.artifacts import ArtifactStore
from shared.auth import Actor
from shared.cache import Cache
from shared.config import Settings, load_settings
from shared.errors import Conflict, InvalidTransition, NotFound
from shared.events.consumer import EventConsumer
from shared.events.outbox import emit

log = logging.getLogger(__name__)

STATUS_AFTER = {"training.started": lifecycle.TRAINING, "training.completed": lifecycle.TRAINED,
                "training.failed": lifecycle.FAILED}


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


class TrainingOutcomes(EventConsumer):
    name = "registry.training"
    routing_keys = tuple(STATUS_AFTER)

    def __init__(self, settings: Settings):
        self.artifacts = ArtifactStore.from_settings(settings)
        self.cache = Cache.from_settings(settings)

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        request_id = f"event:{envelope['id']}"
        model_id = uuid.UUID(str(payload["model_id"]))
        if envelope["type"] == "training.completed" and not self._register(session, payload, request_id, model_id):
            return
        self._move(session, payload, request_id, model_id, STATUS_AFTER[envelope["type"]])

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
            profile=payload["profile"],
        )
        try:
            register_version(session=session, cache=self.cache, artifacts=self.artifacts, actor=_actor(payload),
                             request_id=request_id, model_id=model_id, details=details,
                             artifact_sha256=payload["artifact_sha256"], provenance="trained")
        except (NotFound, Conflict) as exc:
            # The model was deleted or archived while it trained: there is nothing to register it on,
            # and the training service must hear so, or its job would wait for a version forever.
            log.warning("training job %s not registered: %s", job_id, exc.detail)
            emit(session, "model_version.rejected", {"model_id": model_id, "training_job_id": job_id,
                                                      "reason": exc.detail}, producer=models_service.PRODUCER)
            return False
        return True

    def _move(self, session: Session, payload: dict[str, Any], request_id: str, model_id: uuid.UUID,
              status: str) -> None:
        try:
            models_service.update_model(session=session, cache=self.cache, actor=_actor(payload),
                                        request_id=request_id, model_id=model_id, changes={"status": status})
        except InvalidTransition as exc:
            log.info("model %s stays as it is after training job %s: %s", model_id, payload["job_id"], exc.detail)
        except NotFound:
            log.info("model %s is gone; training job %s changes nothing", model_id, payload["job_id"])


def training_outcomes() -> TrainingOutcomes:
    """The consumer as `shared.events.runner` and the relay load it (settings from MODELYARD_*)."""
    return TrainingOutcomes(load_settings())
