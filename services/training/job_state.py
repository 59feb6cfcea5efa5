"""The training job's row lock, under which its state changes, and the end of a failed or cancelled job.

Its own module so that the event consumers can use both without importing the ML libraries the
coordinator needs.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.training.tables import CANCELLED, FAILED, TRIAL_CANCELLED, TRIAL_QUEUED, TrainingJob, Trial
from shared.db import select_for_update, utcnow
from shared.events.outbox import emit

PRODUCER = "training"


def lock_job(session: Session, job_id: uuid.UUID) -> TrainingJob | None:
    """The job row, locked until commit (the coordinator's one lock), with its current values."""
    return session.scalar(select_for_update(session, sa.select(TrainingJob).where(TrainingJob.id == job_id)))


def end_job(session: Session, job: TrainingJob, status: str, message: str, *, actor: str) -> None:
    """End the job, and its phase, as failed or cancelled with a message a person understands; queued trials
    are dropped (running ones see the job's status at their next fold). Either way `training.failed` says so."""
    job.status, job.phase, job.finished_at, job.error = status, None, utcnow(), message
    session.execute(sa.update(Trial).where(Trial.job_id == job.id, Trial.state == TRIAL_QUEUED)
                    .values(state=TRIAL_CANCELLED, finished_at=utcnow()))
    emit(session, "training.failed", {"job_id": job.id, "model_id": job.model_id, "error": message,
                                      "cancelled": status == CANCELLED, "actor": actor}, producer=PRODUCER)


def fail_job(session: Session, job: TrainingJob, message: str) -> None:
    """End the job as failed, on behalf of whoever asked for it."""
    end_job(session, job, FAILED, message, actor=job.requested_by)
