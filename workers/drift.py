"""The drift pool's tasks, monitoring's analyses: beat's sweeps find the served versions whose drift
report is stale and the models whose last hour is to be judged for anomalies, and send them a few per
task, so that the work of many models spreads over the pool's workers.

Computing a report twice (a redelivered task) stores two reports of the same data; the later answers.
An anomaly is recorded once, however often its hour is judged.
"""

from __future__ import annotations

import importlib
import logging
import uuid

from celery import shared_task
from celery.signals import worker_init

from services.monitoring import drift, model_anomalies
from services.monitoring.service import (
    COMPUTE_DRIFT, DETECT_ANOMALIES, DRIFT_QUEUE, SWEEP_ANOMALIES, SWEEP_DRIFT,
)
from services.monitoring.tables import VersionBaseline
from shared.artifacts import ArtifactStore
from shared.db import utcnow
from shared.tasks import enqueue_after_commit
from workers.database_task import DatabaseTask

log = logging.getLogger(__name__)

# Versions per compute task: small enough to spread 1,000 models over every worker, large enough that a
# task's overhead does not count.
CHUNK = 10


@worker_init.connect
def _import_report_libraries(sender, **_) -> None:
    """A worker that consumes the drift queue imports the reports' libraries (pandas; numpy and scipy.stats
    through drift_tests) before it forks its processes, which then share them: imported by each process's
    first report instead, they cost it 1-2 s inside the first sweep."""
    consumed = sender.app.amqp.queues.consume_from  # None: every queue
    if consumed is None or sender.app.modelyard_settings.task_queue(DRIFT_QUEUE) in consumed:
        importlib.import_module("pandas")
        importlib.import_module("services.monitoring.drift_tests")


@shared_task(bind=True, base=DatabaseTask, name=SWEEP_DRIFT)
def sweep(self: DatabaseTask) -> int:
    """Beat: send every served version whose drift report is stale to the drift pool."""
    settings = self.settings
    with self.transaction() as session:
        due = drift.served_versions(session, hours=settings.drift_window_hours,
                                    fresh_seconds=settings.drift_fresh_seconds, now=utcnow())
        for start in range(0, len(due), CHUNK):
            enqueue_after_commit(session, COMPUTE_DRIFT, due[start:start + CHUNK],
                                 queue=settings.task_queue(DRIFT_QUEUE))
    if due:
        log.info("sent %d versions' drift reports to compute", len(due))
    return len(due)


@shared_task(bind=True, base=DatabaseTask, name=COMPUTE_DRIFT)
def compute(self: DatabaseTask, versions: list[list]) -> int:
    """Compute and store the drift report of each (model id, version) over the configured window, each in
    its own transaction: one version's failure does not cost the others theirs. A version another task
    reported on since the sweep (a backlog, a redelivery) is skipped."""
    settings = self.settings
    artifacts, computed = ArtifactStore.from_settings(settings), 0
    for model_id, number in versions:
        try:
            with self.transaction() as session:
                baseline = session.get(VersionBaseline, (uuid.UUID(model_id), number))
                if baseline is None or session.scalar(drift.fresh_report(
                        baseline.model_id, number, hours=settings.drift_window_hours,
                        fresh_seconds=settings.drift_fresh_seconds, now=utcnow()).exists().select()):
                    continue
                if drift.version_drift(
                        session=session, artifacts=artifacts, baseline=baseline,
                        hours=self.settings.drift_window_hours, predictions=None, correction="none",
                        standard_hours=self.settings.drift_window_hours, now=utcnow(),
                        hash_key=settings.feature_hash_key) is not None:
                    computed += 1
        except Exception:
            log.exception("the drift report of model %s version %s failed", model_id, number)
    return computed


@shared_task(bind=True, base=DatabaseTask, name=SWEEP_ANOMALIES)
def sweep_anomalies(self: DatabaseTask) -> int:
    """Beat: send every model with predictions in the last whole hour to have that hour judged."""
    with self.transaction() as session:
        due = model_anomalies.models_to_sweep(session, now=utcnow())
        for start in range(0, len(due), CHUNK):
            enqueue_after_commit(session, DETECT_ANOMALIES, due[start:start + CHUNK],
                                 queue=self.settings.task_queue(DRIFT_QUEUE))
    return len(due)


@shared_task(bind=True, base=DatabaseTask, name=DETECT_ANOMALIES)
def detect_anomalies(self: DatabaseTask, model_ids: list[str]) -> int:
    """Judge each model's last whole hour, each in its own transaction; record and announce anomalies."""
    recorded = 0
    for model_id in model_ids:
        try:
            with self.transaction() as session:
                recorded += model_anomalies.record_last_hour(session, uuid.UUID(model_id), now=utcnow())
        except Exception:
            log.exception("judging model %s's last hour for anomalies failed", model_id)
    return recorded
