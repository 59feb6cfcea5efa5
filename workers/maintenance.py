"""Housekeeping tasks run by beat."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from shared.artifacts import ArtifactStore
from shared.events.outbox import purge_sent
from shared.idempotency import purge_expired
from workers.database_task import DatabaseTask

log = logging.getLogger(__name__)

SENT_OUTBOX_RETENTION = timedelta(days=7)
STALE_UPLOAD = timedelta(days=1)


@shared_task(bind=True, base=DatabaseTask, name="workers.maintenance.purge_sent_outbox")
def purge_sent_outbox(self: DatabaseTask) -> int:
    """Delete outbox rows sent more than 7 days ago, in one transaction."""
    with self.transaction() as session:
        deleted = purge_sent(session=session, older_than=SENT_OUTBOX_RETENTION)
    log.info("purged %d sent outbox rows older than %s", deleted, SENT_OUTBOX_RETENTION)
    return deleted


@shared_task(bind=True, base=DatabaseTask, name="workers.maintenance.purge_stale_uploads")
def purge_stale_uploads(self: DatabaseTask) -> int:
    """Delete partial artifact uploads left by a process that died mid-write a day or more ago."""
    purged = ArtifactStore.from_settings(self.settings).purge_staging(older_than=STALE_UPLOAD.total_seconds())
    log.info("purged %d partial uploads older than %s", purged, STALE_UPLOAD)
    return purged


@shared_task(bind=True, base=DatabaseTask, name="workers.maintenance.purge_idempotency_keys")
def purge_idempotency_keys(self: DatabaseTask) -> int:
    """Delete Idempotency-Key answers older than a day (expired keys already count as unseen)."""
    with self.transaction() as session:
        deleted = purge_expired(session=session)
    log.info("purged %d expired idempotency keys", deleted)
    return deleted
