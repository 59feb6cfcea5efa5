"""The ingest pool's task: store a batch of serving's prediction records in monitoring's store; and
beat's upkeep of that store: its days, hourly (services.monitoring.partitions), and its hours'
tallies, every minute (services.monitoring.rollups).

The batch is the task's argument (plain JSON records, shared.prediction_records); storing it twice
(acks_late re-delivers the task of a worker that died) stores nothing twice, by the store's unique key.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from sqlalchemy.exc import OperationalError

from services.monitoring import partitions, rollups
from services.monitoring.ingestion import store_predictions as store
from services.monitoring.service import KEEP_DAYS, REFRESH_TALLIES
from shared.db import utcnow
from shared.prediction_records import STORE_PREDICTIONS
from workers.database_task import DatabaseTask

log = logging.getLogger(__name__)

# Reasons logged per batch: enough to find the producer's mistake, not a log line per bad record.
REASONS_LOGGED = 5


@shared_task(bind=True, base=DatabaseTask, name=STORE_PREDICTIONS, autoretry_for=(OperationalError,),
             retry_backoff=1, retry_backoff_max=60, retry_jitter=True, max_retries=8)
def store_predictions(self: DatabaseTask, records: list[Any]) -> dict[str, int]:
    """Store a batch of prediction records; a bad record is logged and counted, and the rest stored."""
    # A lost connection, a deadlock or a busy SQLite is retried with backoff (autoretry_for) as a new
    # message carrying the same batch: the rows of the failed attempt rolled back with it.
    with self.transaction() as session:
        outcome = store(session=session, records=records, hash_key=self.settings.feature_hash_key)
    if outcome.rejected:
        log.warning("stored %d of %d prediction records; rejected %d: %s", outcome.stored, len(records),
                    len(outcome.rejected),
                    "; ".join(f"#{index}: {reason}" for index, reason in outcome.rejected[:REASONS_LOGGED]))
    return {"stored": outcome.stored, "duplicates": outcome.duplicates, "rejected": len(outcome.rejected)}


@shared_task(bind=True, base=DatabaseTask, name=KEEP_DAYS)
def keep_days(self: DatabaseTask) -> dict[str, object]:
    """Beat: the coming days' partitions made, and what is older than the retention dropped."""
    with self.transaction() as session:
        kept = partitions.keep_days(session, retention_days=self.settings.prediction_retention_days,
                                    today=utcnow().date())
    if kept.created or kept.dropped or any(kept.deleted.values()):
        log.info("predictions' days: made %s, dropped %s, deleted %s", kept.created, kept.dropped, kept.deleted)
    return {"created": kept.created, "dropped": kept.dropped, "deleted": kept.deleted}


# Hours recomputed per transaction: a short one, so that a run holds no lock long; and a run stops after
# RUN_SECONDS, before beat's next one is due.
HOURS_PER_TRANSACTION = 50
RUN_SECONDS = 50.0


@shared_task(bind=True, base=DatabaseTask, name=REFRESH_TALLIES)
def refresh_tallies(self: DatabaseTask) -> int:
    """Beat: the stale hours' tallies recomputed; how many."""
    started = time.monotonic()
    total = 0
    while time.monotonic() - started < RUN_SECONDS:
        with self.transaction() as session:
            done = rollups.refresh(session, hours=HOURS_PER_TRANSACTION)
        total += done
        if done < HOURS_PER_TRANSACTION:
            break
    return total
