"""The HPO pool's tasks: start a training, run one trial, fit and hand over the final model.

Each task carries ids only and re-reads the job; each step is one transaction; every task is safe to
run twice (acks_late with reject_on_worker_lost re-delivers the task of a worker that died). The
ask/tell logic itself lives in services.training.coordinator; this module adds the data loading,
the ML calls and the error handling around it.

The ML modules (pandas, scikit-learn, skops...) are imported inside the tasks that use them, so a
worker process loads them with its first training task: an idle worker, and one that only runs
beat's housekeeping, stays small. `start_training` sends `warm_up` to the job's other trial slots so
that they load them while it checks the data, not on their first trial.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import json
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

from celery import shared_task
from sqlalchemy.exc import OperationalError

from services.training import coordinator
from services.training.data_checks import TrainingDataError
from services.training.job_state import PRODUCER, fail_job, lock_job
from services.training.service import (
    FINALIZE_TRAINING, QUEUE, REDISPATCH_STALLED, RUN_TRIAL, START_TRAINING, WARM_UP,
)
from services.training.tables import QUEUED, REGISTERING, RUNNING, TrainingJob
from services.training.spec import TrainingSpec
from services.training.strategies import should_prune
from shared.artifacts import ArtifactStore
from shared.config import Settings
from shared.events.outbox import emit
from shared.tasks import enqueue_after_commit
from workers.database_task import DatabaseTask

if TYPE_CHECKING:
    import pandas as pd

    from services.training.data import DataSplit

log = logging.getLogger(__name__)

TRANSIENT_RETRIES = 3
# What a trial imports (a second or two of CPU in a fresh process).
TRIAL_MODULES = ("services.training.data", "services.training.evaluation", "services.training.optimizers")


class DataChanged(TrainingDataError):
    """The file named by training_data_path no longer has the content the job was validated against."""


@functools.lru_cache(maxsize=4)
def _frame(sha256: str, path: str | None, artifact_root: str, artifact_keys: str) -> pd.DataFrame:
    """The job's data as a DataFrame, read once per worker process (trials of a job share it)."""
    from services.training.data import load_frame

    if path is None:
        raw = ArtifactStore.from_settings(Settings(artifact_root=artifact_root, artifact_keys=artifact_keys)) \
            .read_bytes(sha256)
    else:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise TrainingDataError(f"The training data file {path} cannot be read: {exc.strerror}.") from exc
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise DataChanged(f"The training data file {path} changed after the training was requested; "
                              "request the training again to train on its new content.")
    return load_frame(raw)


def _split(settings: Settings, spec: TrainingSpec, sha256: str, path: str | None) -> DataSplit:
    from services.training.data import split

    return split(_frame(sha256, path, settings.artifact_root, settings.artifact_keys), spec)


def _readable(exc: BaseException) -> str:
    if isinstance(exc, TrainingDataError):
        return exc.detail
    return f"{type(exc).__name__}: {exc}"


def _fail(task: DatabaseTask, job_id: uuid.UUID, message: str) -> None:
    with task.transaction() as session:
        job = lock_job(session, job_id)
        if job is not None and job.status in (QUEUED, RUNNING) and job.phase != REGISTERING:
            fail_job(session, job, message)


def _hpo_queue(task: DatabaseTask) -> str:
    return task.settings.task_queue(QUEUE)


@shared_task(name=WARM_UP)
def warm_up() -> None:
    """Load the modules a trial needs into this pool process, ahead of the job's first trials."""
    for name in TRIAL_MODULES:
        importlib.import_module(name)


@shared_task(bind=True, base=DatabaseTask, name=START_TRAINING)
def start_training(self: DatabaseTask, job_id: str) -> None:
    """Check the data can train, then move the job to running and enqueue its first trials."""
    job_uuid = uuid.UUID(job_id)
    with self.transaction() as session:
        job = session.get(TrainingJob, job_uuid)
        if job is None or job.status != QUEUED:
            return
        spec, sha256, path = TrainingSpec.from_dict(job.spec), job.dataset_sha256, job.training_data_path
        for _ in range(spec.parallelism - 1):
            enqueue_after_commit(session, warm_up.name, queue=_hpo_queue(self))
    refusal = None
    try:
        # A CSV that parses but cannot train (one class, no target...) fails here, before any trial.
        _split(self.settings, spec, sha256, path)
    except Exception as exc:
        log.warning("training %s cannot start: %s", job_id, exc)
        refusal = _readable(exc)
    with self.transaction() as session:
        coordinator.start(session=session, job_id=job_uuid, queue=_hpo_queue(self), refusal=refusal)


def _cancel_check(task: DatabaseTask, job_id: uuid.UUID) -> Callable[[], bool]:
    def cancelled() -> bool:
        with task.transaction() as session:
            return not coordinator.job_is_running(session, job_id)

    return cancelled


@shared_task(bind=True, base=DatabaseTask, name=RUN_TRIAL)
def run_trial(self: DatabaseTask, job_id: str, number: int) -> None:
    """Cross-validate one trial's parameters, store the outcome and ask the next trial."""
    from services.training.evaluation import TrialCancelled, evaluate_trial

    job_uuid = uuid.UUID(job_id)
    with self.transaction() as session:
        claim = coordinator.claim_trial(session=session, job_id=job_uuid, number=number, task_id=self.request.id)
        if claim is None and (self.request.delivery_info or {}).get("redelivered"):
            # This task's worker died, perhaps after storing the trial's outcome and before sending the
            # tasks that come next (they leave after the commit): send those again now, not at the sweep.
            coordinator.redispatch(session=session, queue=_hpo_queue(self), job_id=job_uuid)
    if claim is None:
        return
    spec = claim.spec
    prune = None
    if spec.early_stopping:
        prune = functools.partial(lambda history, scores: should_prune(history, scores, spec.direction),
                                  claim.completed_fold_scores)
    outcome, error, cancelled = None, None, False
    try:
        data = _split(self.settings, spec, claim.dataset_sha256, claim.training_data_path)
        outcome = evaluate_trial(spec, data, claim.params, prune=prune, cancelled=_cancel_check(self, job_uuid))
    except TrialCancelled:
        cancelled = True
    except Exception as exc:  # a trial's params may not fit the data; the search goes on without it
        log.warning("training %s trial %d failed: %s", job_id, number, exc)
        error = _readable(exc)
    try:
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                with self.transaction() as session:
                    coordinator.trial_finished(session=session, job_id=job_uuid, number=number, outcome=outcome,
                                               error=error, cancelled=cancelled, queue=_hpo_queue(self))
                break
            except OperationalError:
                # A deadlock, lock timeout or busy SQLite: the trial's result is still in hand, so try again.
                if attempt == TRANSIENT_RETRIES:
                    raise
                log.warning("training %s trial %d: storing failed transiently, retrying", job_id, number)
                time.sleep(0.2 * 2 ** attempt)
    except Exception as exc:
        log.exception("training %s: the optimizer failed after trial %d", job_id, number)
        _fail(self, job_uuid, f"The hyperparameter search failed after trial {number}: {_readable(exc)}")


def _json_safe(value: Any) -> Any:
    """Plain JSON with non-finite numbers as null (Postgres JSON and the event catalogue refuse NaN)."""
    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return clean(json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))))


def _code_version(settings: Settings) -> str:
    return settings.code_version or f"modelyard {importlib.metadata.version('modelyard')}"


@shared_task(bind=True, base=DatabaseTask, name=FINALIZE_TRAINING)
def finalize_training(self: DatabaseTask, job_id: str) -> None:
    """Refit the best parameters on train + validation, score on test, store the artifact, hand it to the registry."""
    from services.training.evaluation import fit_final
    from services.training.model_io import dumps, library_versions
    from services.training.profile import profile_training_data, reference_sample

    job_uuid = uuid.UUID(job_id)
    with self.transaction() as session:
        job = coordinator.begin_final_fit(session=session, job_id=job_uuid)
        if job is None:
            return
        spec, best_params = TrainingSpec.from_dict(job.spec), dict(job.best_params or {})
        sha256, path = job.dataset_sha256, job.training_data_path
    try:
        data = _split(self.settings, spec, sha256, path)
        final = fit_final(spec, data, best_params)
        store = ArtifactStore.from_settings(self.settings)
        artifact = store.put_bytes(dumps(final.pipeline))
        profile = profile_training_data(data.X_fit, data.y_fit, data.feature_kinds, classes=data.classes)
        # A CSV, encrypted like any artifact, read back as training reads its data (data.load_frame).
        sample = reference_sample(data.X_fit, final.pipeline, data.classes, random_state=spec.random_state)
        reference = store.put_bytes(sample.to_csv(index=False).encode())
    except Exception as exc:
        log.exception("training %s: the final fit failed", job_id)
        _fail(self, job_uuid, f"The final fit failed: {_readable(exc)}")
        return
    with self.transaction() as session:
        job = lock_job(session, job_uuid)
        if job is None or coordinator.begin_final_fit(session=session, job_id=job_uuid) is None:
            return  # cancelled while fitting, or a duplicate task finished first
        job.phase, job.artifact_sha256 = REGISTERING, artifact.sha256
        job.test_metrics = _json_safe(final.test_metrics)
        cv = job.cv_scores or {}
        cv_metrics = {f"cv_{spec.metric}": cv.get("mean"), f"cv_{spec.metric}_std": cv.get("std")}
        emit(session, "training.completed", _json_safe({
            "job_id": str(job.id), "model_id": str(job.model_id), "artifact_sha256": artifact.sha256,
            "dataset_id": str(job.dataset_id) if job.dataset_id else None, "dataset_sha256": job.dataset_sha256,
            "training_data_path": job.training_data_path, "parent_version": job.parent_version,
            "estimator": spec.estimator, "best_params": best_params, "cv_metrics": cv_metrics,
            "test_metrics": final.test_metrics, "code_version": _code_version(self.settings),
            "random_state": spec.random_state, "library_versions": library_versions(), "profile": profile,
            "reference_sha256": reference.sha256, "reference_rows": len(sample),
            "feature_importances": final.feature_importances,
            "description": job.description, "actor": job.requested_by, "actor_id": job.requested_by_id,
            "features": list(spec.features),
        }), producer=PRODUCER)


@shared_task(bind=True, base=DatabaseTask, name=REDISPATCH_STALLED)
def redispatch_stalled(self: DatabaseTask) -> int:
    """Beat: send again the training tasks that were committed but never reached a worker."""
    with self.transaction() as session:
        sent = coordinator.redispatch(session=session, queue=_hpo_queue(self))
    if sent:
        log.warning("re-sent %d stalled training tasks", sent)
    return sent
