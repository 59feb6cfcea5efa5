"""Training tables: a job (one training request and its outcome) and its numbered HPO trials.

Only the training service writes these. The job row is the coordinator's lock: every "a trial
finished, ask the next" step runs under SELECT ... FOR UPDATE of it, so two workers finishing at once
never ask the same trial number twice. `row_version` counts every committed change to the job.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from services.training import strategies
from shared.db import Base, JSONType, UUIDPrimaryKey, utcnow

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = JOB_STATUSES
FINISHED_JOB_STATUSES = (SUCCEEDED, FAILED, CANCELLED)
PHASES = ("searching", "final_fit", "registering")
SEARCHING, FINAL_FIT, REGISTERING = PHASES

TRIAL_STATES = ("queued", *strategies.TRIAL_STATES)
TRIAL_QUEUED, TRIAL_RUNNING, TRIAL_COMPLETE, TRIAL_PRUNED, TRIAL_FAILED, TRIAL_CANCELLED = TRIAL_STATES
IN_FLIGHT = (TRIAL_QUEUED, TRIAL_RUNNING)
TRIAL_DONE = (TRIAL_COMPLETE, TRIAL_PRUNED, TRIAL_FAILED)


class TrainingJob(UUIDPrimaryKey, Base):
    __tablename__ = "training_jobs"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    status: Mapped[str] = mapped_column(sa.String(16), default=QUEUED)
    phase: Mapped[str | None] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # The frozen TrainingSpec (services.training.spec) the workers run.
    spec: Mapped[dict] = mapped_column(JSONType)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    dataset_sha256: Mapped[str] = mapped_column(sa.String(64))
    training_data_path: Mapped[str | None] = mapped_column(sa.Text)
    parent_version: Mapped[int | None] = mapped_column(sa.Integer)
    requested_by: Mapped[str] = mapped_column(sa.String(255))
    requested_by_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    trials_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    trials_done: Mapped[int] = mapped_column(sa.Integer, default=0)
    best_value: Mapped[float | None] = mapped_column(sa.Float)
    best_params: Mapped[dict | None] = mapped_column(JSONType)
    best_trial: Mapped[int | None] = mapped_column(sa.Integer)
    cv_scores: Mapped[dict | None] = mapped_column(JSONType)
    test_metrics: Mapped[dict | None] = mapped_column(JSONType)
    artifact_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    version_number: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    row_version: Mapped[int] = mapped_column(sa.Integer, default=1)

    __mapper_args__ = {"version_id_col": row_version}
    __table_args__ = (
        sa.Index("ix_training_jobs_model_id_created_at", "model_id", "created_at", "id"),
        sa.Index("ix_training_jobs_status", "status"),
    )


class Trial(UUIDPrimaryKey, Base):
    __tablename__ = "training_trials"

    job_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("training_jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    params: Mapped[dict] = mapped_column(JSONType)
    # Strategy-private state the optimizer is rebuilt from (e.g. the NSGA-II generation).
    attrs: Mapped[dict] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default=TRIAL_QUEUED)
    fold_scores: Mapped[list] = mapped_column(JSONType, default=list)
    mean: Mapped[float | None] = mapped_column(sa.Float)
    std: Mapped[float | None] = mapped_column(sa.Float)
    duration_s: Mapped[float | None] = mapped_column(sa.Float)
    dispatched_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # The Celery task that claimed the trial: its redelivery re-runs it, a duplicate send does not.
    celery_task_id: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        # The idempotency key of the ask/tell loop: a trial number exists once per job.
        sa.UniqueConstraint("job_id", "number", name="uq_training_trials_job_id_number"),
        sa.Index("ix_training_trials_job_id_state", "job_id", "state"),
    )
