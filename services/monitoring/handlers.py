"""Monitoring's reactions to other services' events: a registered version's baseline is kept here
(tables.VersionBaseline), so that drift and concept drift need not ask the registry."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.tables import VersionBaseline
from shared.events.consumer import EventConsumer


class VersionBaselines(EventConsumer):
    name = "monitoring.versions"
    routing_keys = ("model_version.registered", "model_version.deleted", "model.deleted")

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        key = {"model_id": uuid.UUID(str(payload["model_id"]))}
        if envelope["type"] != "model.deleted":
            key["version"] = payload["version"]
        # A redelivered registration finds its row; a deletion of a version never seen deletes nothing.
        session.execute(sa.delete(VersionBaseline).filter_by(**key))
        if envelope["type"] == "model_version.registered":
            session.add(VersionBaseline(
                **key, model_type=payload.get("model_type"), metrics=payload.get("metrics"),
                reference_sha256=payload.get("reference_sha256"), reference_rows=payload.get("reference_rows"),
                feature_kinds=payload.get("feature_kinds"), feature_importances=payload.get("feature_importances")))


def version_baselines() -> VersionBaselines:
    """The consumer as `shared.events.runner` and the relay load it."""
    return VersionBaselines()
