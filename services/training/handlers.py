"""Training's reactions to other services' events: a trained version was registered, or refused.

The registry registers the version a training produced (on training.completed) and says so with
model_version.registered carrying the training job's id; only then is the job `succeeded`, with the
version's number.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session

from services.training.job_state import fail_job, lock_job
from services.training.tables import REGISTERING, RUNNING, SUCCEEDED
from shared.db import utcnow
from shared.events.consumer import EventConsumer

log = logging.getLogger(__name__)


class VersionRegistrations(EventConsumer):
    name = "training"
    routing_keys = ("model_version.registered", "model_version.rejected")

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        if not payload.get("training_job_id"):
            return  # an uploaded version: not ours
        job = lock_job(session, uuid.UUID(str(payload["training_job_id"])))
        if job is None:
            log.info("%s for model %s names an unknown training job %s", envelope["type"], payload["model_id"],
                     payload["training_job_id"])
            return
        if job.status != RUNNING or job.phase != REGISTERING:
            log.info("training job %s is %s; %s changes nothing", job.id, job.status, envelope["type"])
            return
        if envelope["type"] == "model_version.rejected":
            fail_job(session, job, f"The registry did not register the trained model: {payload['reason']}")
            return
        job.version_number, job.status, job.phase, job.finished_at = payload["version"], SUCCEEDED, None, utcnow()


def version_registrations() -> VersionRegistrations:
    """The consumer as `shared.events.runner` and the relay load it."""
    return VersionRegistrations()
