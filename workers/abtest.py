"""The abtest pool's tasks, monitoring's A/B analyses: beat's sweep sends each running test (and each test ended
since its last look) one analysis task, so that the tests spread over the pool's workers, each look in its own
transaction.

A task carries the time of its sweep: a test looked at since (by a redelivered or backlogged task, or a GET) is
not looked at again, so a pool that falls behind does not pile up looks of the same test.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from celery import shared_task

from services.monitoring import ab_analysis
from services.monitoring.service import ABTEST_QUEUE, ANALYSE_ABTEST, SWEEP_ABTESTS
from shared.db import utcnow
from shared.tasks import enqueue_after_commit
from workers.database_task import DatabaseTask


@shared_task(bind=True, base=DatabaseTask, name=SWEEP_ABTESTS)
def sweep(self: DatabaseTask) -> int:
    """Beat: send every running A/B test without a verdict, and every test ended since its last look, to the abtest
    pool."""
    swept_at = utcnow().isoformat()
    with self.transaction() as session:
        due = ab_analysis.due_tests(session)
        for test_id in due:
            enqueue_after_commit(session, ANALYSE_ABTEST, str(test_id), swept_at,
                                 queue=self.settings.task_queue(ABTEST_QUEUE))
    return len(due)


@shared_task(bind=True, base=DatabaseTask, name=ANALYSE_ABTEST)
def analyse(self: DatabaseTask, test_id: str, swept_at: str) -> bool:
    """Take a look at the test (ab_analysis.take_look), unless it is no longer due (decided, or its last look after
    its end taken) or was looked at since the sweep; whether a look was taken."""
    with self.transaction() as session:
        test = ab_analysis.lock_due(session, uuid.UUID(test_id))
        if test is None:
            return False
        if ab_analysis.looked_since(session, test.ab_test_id, datetime.fromisoformat(swept_at)):
            return False
        ab_analysis.take_look(session, test, now=utcnow())
    return True
