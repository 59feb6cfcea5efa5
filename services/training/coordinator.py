"""The asynchronous ask/tell loop of a training job, one short step per Celery task.

No task ever waits for another. `start` asks the first `parallelism` trials; each trial task stores
its outcome and calls `trial_finished` in the same transaction, which (under SELECT ... FOR UPDATE
of the job row) rebuilds the strategy from the stored trials, asks the next candidates until
`parallelism` are in flight again, and enqueues them after commit; when every trial is done it
moves the job to its final fit. Storing a result and asking its successor commit together, so a
worker killed at any point either leaves the trial to be re-run (its task is redelivered: acks_late
with reject_on_worker_lost) or leaves both done. A trial number is created once (a unique key),
and a task for a trial that is no longer in flight does nothing.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.training.tables import (
    CANCELLED, FINAL_FIT, IN_FLIGHT, QUEUED, RUNNING, SEARCHING, TRIAL_CANCELLED, TRIAL_COMPLETE,
    TRIAL_DONE, TRIAL_FAILED, TRIAL_PRUNED, TRIAL_QUEUED, TRIAL_RUNNING, TrainingJob, Trial,
)
from services.training.job_state import PRODUCER, fail_job, lock_job
from services.training.spec import TrainingSpec
from services.training.service import FINALIZE_TRAINING, RUN_TRIAL, START_TRAINING
from services.training import strategies
from services.training.strategies import TrialRecord, make_strategy
from shared.db import select_for_update, utcnow
from shared.events.outbox import emit
from shared.tasks import enqueue_after_commit

if TYPE_CHECKING:  # evaluation imports scikit-learn; the event consumers that lock jobs do not need it
    from services.training.evaluation import TrialOutcome

# A queued trial or job whose task has not started after this long is sent again (see `redispatch`).
REDISPATCH_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class TrialClaim:
    """What a trial task needs to run its trial, read in the transaction that claimed it."""

    spec: TrainingSpec
    params: dict[str, Any]
    dataset_sha256: str
    training_data_path: str | None
    # Fold scores of the job's completed trials: the reference of the median pruning rule.
    completed_fold_scores: list[list[float]]


def _trials(session: Session, job_id: uuid.UUID) -> list[Trial]:
    return list(session.scalars(sa.select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))


def _record(trial: Trial) -> TrialRecord:
    # A queued trial is as good as running to the optimizer: it was asked and has no result yet.
    state = strategies.RUNNING if trial.state in IN_FLIGHT else trial.state
    return TrialRecord(number=trial.number, params=trial.params, state=state, value=trial.mean, attrs=trial.attrs)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def start(*, session: Session, job_id: uuid.UUID, queue: str, refusal: str | None = None) -> TrainingJob | None:
    """Move a queued job to running and ask its first trials, or, with a `refusal` (the data cannot
    train), start and fail it at once. A job already started is left alone."""
    job = lock_job(session, job_id)
    if job is None or job.status != QUEUED:
        return None
    spec = TrainingSpec.from_dict(job.spec)
    capacity = make_strategy(spec).capacity if spec.search_space else 1
    job.status, job.phase, job.started_at = RUNNING, SEARCHING, utcnow()
    job.trials_total = min(spec.max_trials, capacity)
    emit(session, "training.started", {"job_id": job.id, "model_id": job.model_id, "strategy": spec.strategy,
                                       "trials_total": job.trials_total, "actor": job.requested_by},
         producer=PRODUCER)
    if refusal is not None:
        fail_job(session, job, refusal)
    else:
        _refill(session, job, spec, [], queue)
    return job


def _refill(session: Session, job: TrainingJob, spec: TrainingSpec, trials: list[Trial], queue: str) -> None:
    """Ask and enqueue trials until `parallelism` are in flight or the budget is asked; finish the search
    when nothing is left in flight."""
    in_flight = sum(trial.state in IN_FLIGHT for trial in trials)
    history = [_record(trial) for trial in trials]
    # Without a search space the one trial runs the estimator's defaults; no optimizer is needed.
    strategy = make_strategy(spec) if spec.search_space else None
    number = len(trials)
    while in_flight < spec.parallelism and number < job.trials_total:
        params, attrs = strategy.ask(history, number) if strategy else ({}, {})
        session.add(Trial(job_id=job.id, number=number, params=params, attrs=attrs, state=TRIAL_QUEUED,
                          dispatched_at=utcnow()))
        history.append(TrialRecord(number=number, params=params, state=strategies.RUNNING, attrs=attrs))
        enqueue_after_commit(session, RUN_TRIAL, str(job.id), number, queue=queue)
        number += 1
        in_flight += 1
    session.flush()
    if in_flight == 0:
        _finish_search(session, job, trials, queue)


def _finish_search(session: Session, job: TrainingJob, trials: list[Trial], queue: str) -> None:
    if job.best_params is None:
        failures = [trial.error for trial in trials if trial.state == TRIAL_FAILED and trial.error]
        reason = f" The first error: {failures[0]}" if failures else ""
        fail_job(session, job, f"No trial completed, so there is no model to fit.{reason}")
        return
    job.phase = FINAL_FIT
    enqueue_after_commit(session, FINALIZE_TRAINING, str(job.id), queue=queue)


def claim_trial(*, session: Session, job_id: uuid.UUID, number: int, task_id: str) -> TrialClaim | None:
    """Mark the trial running for this task, or None when it is not this task's to run.

    A queued trial is claimed; a running one only by the task that claimed it before (Celery
    redelivers the same task id when its worker died mid-trial), never by a duplicate send.
    """
    trial = session.scalar(select_for_update(session, sa.select(Trial).where(Trial.job_id == job_id,
                                                                             Trial.number == number)))
    if trial is None or not (trial.state == TRIAL_QUEUED
                             or (trial.state == TRIAL_RUNNING and trial.celery_task_id == task_id)):
        return None
    job = session.get(TrainingJob, job_id)
    if job.status != RUNNING:
        return None
    trial.state, trial.started_at, trial.celery_task_id = TRIAL_RUNNING, utcnow(), task_id
    completed = session.scalars(sa.select(Trial.fold_scores).where(Trial.job_id == job_id,
                                                                   Trial.state == TRIAL_COMPLETE))
    return TrialClaim(spec=TrainingSpec.from_dict(job.spec), params=trial.params,
                      dataset_sha256=job.dataset_sha256, training_data_path=job.training_data_path,
                      completed_fold_scores=[list(scores) for scores in completed])


def job_is_running(session: Session, job_id: uuid.UUID) -> bool:
    return session.scalar(sa.select(TrainingJob.status).where(TrainingJob.id == job_id)) == RUNNING


def _update_progress(job: TrainingJob, spec: TrainingSpec, trials: list[Trial]) -> None:
    job.trials_done = sum(trial.state in TRIAL_DONE for trial in trials)
    scored = [trial for trial in trials if trial.state == TRIAL_COMPLETE and _finite(trial.mean) is not None]
    if not scored:
        return
    sign = 1 if spec.direction == "maximize" else -1
    # Ties go to the earlier trial, so the best trial is deterministic.
    best = max(scored, key=lambda trial: (sign * trial.mean, -trial.number))
    # The whole parameter set, fixed and searched: what the final fit uses and the version records.
    job.best_value, job.best_params, job.best_trial = best.mean, spec.estimator_params(best.params), best.number
    job.cv_scores = {"metric": spec.metric, "mean": best.mean, "std": best.std, "folds": best.fold_scores}


def trial_finished(*, session: Session, job_id: uuid.UUID, number: int, outcome: TrialOutcome | None = None,
                   error: str | None = None, cancelled: bool = False, queue: str) -> None:
    """Store a trial's outcome (or its error), then refill the job's trials in flight, under the job lock."""
    job = lock_job(session, job_id)
    trials = _trials(session, job_id) if job is not None else []
    trial = next((t for t in trials if t.number == number), None)
    if job is None or trial is None or trial.state not in IN_FLIGHT:
        return  # stored before: this is a duplicate delivery
    trial.finished_at = utcnow()
    if outcome is not None:
        trial.fold_scores = [float(score) for score in outcome.fold_scores]
        trial.mean, trial.std = _finite(outcome.mean), _finite(outcome.std)
        trial.duration_s = outcome.duration_s
        trial.state = TRIAL_PRUNED if outcome.pruned else TRIAL_COMPLETE
    elif cancelled or job.status == CANCELLED:
        trial.state = TRIAL_CANCELLED
    else:
        trial.state, trial.error = TRIAL_FAILED, error
    if job.status != RUNNING or job.phase != SEARCHING:
        return  # cancelled or failed meanwhile: keep the result, ask nothing more
    spec = TrainingSpec.from_dict(job.spec)
    _update_progress(job, spec, trials)
    _refill(session, job, spec, trials, queue)


def begin_final_fit(*, session: Session, job_id: uuid.UUID) -> TrainingJob | None:
    """The job if it is waiting for its final fit, else None (cancelled, failed, or fitted already)."""
    job = session.get(TrainingJob, job_id)
    if job is None or job.status != RUNNING or job.phase != FINAL_FIT:
        return None
    return job


def redispatch(*, session: Session, queue: str, job_id: uuid.UUID | None = None) -> int:
    """Send again the tasks that should be running but whose message never reached a worker.

    Tasks leave after their transaction commits; a broker failure, or a worker killed, at that moment
    leaves a queued job, a queued trial or a job waiting for its final fit with no task to move it.
    Every task is safe to receive twice, so sending again after REDISPATCH_AFTER only costs a no-op
    when it was merely late. With `job_id`, that job's at once: its worker is known to have died.
    """
    cutoff = utcnow() - (REDISPATCH_AFTER if job_id is None else timedelta(0))
    this_job = sa.true() if job_id is None else TrainingJob.id == job_id
    sent = 0
    for job in session.scalars(sa.select(TrainingJob).where(this_job, TrainingJob.status == QUEUED,
                                                            TrainingJob.updated_at < cutoff).with_for_update()):
        job.updated_at = utcnow()
        enqueue_after_commit(session, START_TRAINING, str(job.id), queue=queue)
        sent += 1
    for job in session.scalars(sa.select(TrainingJob).where(this_job, TrainingJob.status == RUNNING,
                                                            TrainingJob.phase == FINAL_FIT,
                                                            TrainingJob.updated_at < cutoff).with_for_update()):
        job.updated_at = utcnow()
        enqueue_after_commit(session, FINALIZE_TRAINING, str(job.id), queue=queue)
        sent += 1
    stale = session.scalars(
        sa.select(Trial).join(TrainingJob, TrainingJob.id == Trial.job_id)
        .where(this_job, TrainingJob.status == RUNNING, Trial.state == TRIAL_QUEUED, Trial.dispatched_at < cutoff)
        .with_for_update(of=Trial))
    for trial in stale:
        trial.dispatched_at = utcnow()
        enqueue_after_commit(session, RUN_TRIAL, str(trial.job_id), trial.number, queue=queue)
        sent += 1
    return sent
