"""A real ingest worker killed outright (SIGKILL, the whole worker and its pool) in the middle of storing
serving's batches: a new worker stores every record of every batch, and none twice."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.monitoring.tables import Prediction
from shared.config import load_settings
from shared.db import Database
from shared.prediction_records import QUEUE, STORE_PREDICTIONS, prediction_record
from shared.tasks import PLAIN_JSON, task_sender
from tests.conftest import RUN_ID
from tests.support.databases import empty_tables
from tests.support.polling import wait_for
from tests.support.training import celery_worker, training_settings

pytestmark = pytest.mark.integration

BATCHES, BATCH = 80, 500


@pytest.fixture
def settings(database_url, servers, tmp_path):
    return training_settings(database_url, servers, tmp_path, RUN_ID)


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    yield database
    empty_tables(database.engine)
    database.dispose()


def _counts(db: Database) -> tuple[int, int]:
    with db.transaction() as session:
        return session.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(Prediction.request_id)))).one()


def test_a_worker_killed_mid_ingestion_loses_nothing_and_doubles_nothing(db, settings, tmp_path):
    loaded = load_settings(settings)
    model_id, now = uuid.uuid4(), datetime.now(timezone.utc)
    sender = task_sender(loaded)
    with celery_worker(settings, tmp_path / "first.log", pools=(QUEUE,)) as first:
        for number in range(BATCHES):
            records = [prediction_record(model_id=model_id, version=1, request_id=f"b{number}-r{row}", prediction=row % 2,
                                         features={f"x{i}": float(row * i) for i in range(20)}, latency_ms=1.0,
                                         predicted_at=now - timedelta(seconds=row)) for row in range(BATCH)]
            # As serving sends them (services/serving/prediction_log.py).
            sender.send_task(STORE_PREDICTIONS, args=[records], queue=loaded.task_queue(QUEUE), serializer=PLAIN_JSON)
        wait_for(lambda: _counts(db)[0] >= 5 * BATCH, timeout=60, what="the first batches stored")
        os.killpg(first.process.pid, signal.SIGKILL)  # worker and pool children at once, mid-batch
        first.process.wait()
        stored_when_killed = _counts(db)[0]
        assert stored_when_killed < BATCHES * BATCH, "the worker finished before it could be killed: send more"
        # Its unacknowledged batches go back to the queue when its connection drops; a new worker takes them.
        with celery_worker(settings, tmp_path / "second.log", pools=(QUEUE,)):
            wait_for(lambda: _counts(db)[0] >= BATCHES * BATCH, timeout=120, what="every record stored")
            assert _counts(db) == (BATCHES * BATCH, BATCHES * BATCH)
