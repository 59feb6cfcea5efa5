"""The deploy pool's tasks: run a rollout's steps (services.deployment.rollout) and heal stalled ones.

Each task carries a deployment id and re-reads it; each step is one transaction; a duplicate changes
nothing. The health check runs between transactions: it loads the candidate (seconds, for a large
model) and no row stays locked meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from celery import shared_task

from services.deployment import rollout, usage
from services.deployment.service import NEXT_STEP, OBSERVE, QUEUE, REDISPATCH_STALLED, REPORT_USAGE, ROLL_OUT
from shared.artifacts import ArtifactStore
from shared.db import utcnow
from shared.errors import IntegrityFailure
from workers.database_task import DatabaseTask

log = logging.getLogger(__name__)


def _queue(task: DatabaseTask) -> str:
    return task.settings.task_queue(QUEUE)


def _pace(task: DatabaseTask) -> rollout.Pace:
    return rollout.Pace(_queue(task), task.settings.switch_ahead_seconds)


def _loader(task: DatabaseTask, candidate: rollout.Candidate):
    def load():
        # Imported here: an idle deploy worker carries no scikit-learn.
        from shared.served_model import LoadedModel

        data = ArtifactStore.from_settings(task.settings).read_bytes(candidate.artifact_sha256)
        if hashlib.sha256(data).hexdigest() != candidate.artifact_sha256:
            raise IntegrityFailure("the artifact's bytes do not match its sha256")
        return LoadedModel.load(data, flavor=candidate.flavor or "skops", features=candidate.features,
                                profile=candidate.profile, allow_pickle=task.settings.allow_pickle)

    return load


def _smoke_rows(candidate: rollout.Candidate):
    def rows(model) -> list[dict]:
        from shared.served_model import smoke_instances

        return smoke_instances(model.features, model.kinds, candidate.profile)

    return rows


@shared_task(bind=True, base=DatabaseTask, name=ROLL_OUT)
def roll_out(self: DatabaseTask, deployment_id: str) -> None:
    """Health-check the candidate, then move the first traffic (or fail the deployment)."""
    deployment_uuid = uuid.UUID(deployment_id)
    with self.transaction() as session:
        candidate = rollout.begin(session, deployment_uuid)
    if candidate is None:
        return
    results, failure = rollout.health_check(_loader(self, candidate), _smoke_rows(candidate), candidate.config)
    if failure:
        log.warning("deployment %s failed its health check: %s", deployment_id, failure)
    with self.transaction() as session:
        rollout.checked(session, deployment_uuid, results, failure, _pace(self))


@shared_task(bind=True, base=DatabaseTask, name=NEXT_STEP)
def next_step(self: DatabaseTask, deployment_id: str, step: int) -> None:
    """A canary's next traffic step, after its pause."""
    with self.transaction() as session:
        rollout.advance(session, uuid.UUID(deployment_id), step, _pace(self))


@shared_task(bind=True, base=DatabaseTask, name=REDISPATCH_STALLED)
def redispatch_stalled(self: DatabaseTask) -> int:
    """Beat: send again the rollout tasks that were committed but never reached a worker."""
    with self.transaction() as session:
        sent = rollout.redispatch(session, _queue(self))
    if sent:
        log.warning("re-sent %d stalled rollout tasks", sent)
    return sent


@shared_task(bind=True, base=DatabaseTask, name=REPORT_USAGE)
def report_usage(self: DatabaseTask) -> int:
    """Beat: tell monitoring each live endpoint's replicas' CPU and memory (endpoint.usage_reported)."""
    with self.transaction() as session:
        return usage.announce_usage(session, utcnow())


@shared_task(bind=True, base=DatabaseTask, name=OBSERVE)
def observe(self: DatabaseTask, deployment_id: str) -> None:
    """Judge a rollout's candidate on the replicas' reports; roll back on a breached threshold."""
    with self.transaction() as session:
        rollout.observe(session, uuid.UUID(deployment_id), _queue(self))
