"""Beat's sweeps on real Celery workers: the served versions' stale drift reports are computed by the
drift pool, a few versions per task, and a fresh report is not computed again; a model's anomalous last
hour is recorded and announced once, however often it is judged."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from services.monitoring.drift import served_versions
from services.monitoring.ingestion import store_predictions
from services.monitoring.service import DRIFT_QUEUE, SWEEP_ANOMALIES, SWEEP_DRIFT
from services.monitoring.tables import DetectedAnomaly, DriftReport, VersionBaseline
from shared.events.outbox import OutboxEvent
from shared.artifacts import ArtifactStore
from shared.config import load_settings
from shared.db import Database
from shared.prediction_records import prediction_record
from shared.tasks import task_sender
from tests.conftest import RUN_ID
from tests.support.databases import empty_tables
from tests.support.polling import wait_for
from tests.support.training import celery_worker, training_settings

pytestmark = pytest.mark.integration

MODELS = 23  # three compute tasks of up to ten versions


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return training_settings(database_url, servers, tmp_path_factory.mktemp("drift"), RUN_ID)


@pytest.fixture(scope="module")
def db(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _empty(db):
    yield
    empty_tables(db.engine)


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log",
                       pools=("default", DRIFT_QUEUE)) as running:
        yield running


def _served_version(db: Database, store: ArtifactStore, rng: np.random.Generator, *, shifted: bool,
                    reference: bool = True, hours_ago: float = 1) -> uuid.UUID:
    """A version with a reference sample (as training leaves it) and 200 recent predictions with features."""
    model_id = uuid.uuid4()
    sample = pd.DataFrame({"x": rng.normal(0, 1, 300), "colour": rng.choice(["red", "blue"], 300)})
    stored = store.put_bytes(sample.to_csv(index=False).encode())
    when = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    # Unshifted, the window repeats reference rows: no test can flag it by chance.
    current = rng.normal(3, 1, 200) if shifted else sample["x"].to_numpy()[:200]
    records = [prediction_record(model_id=model_id, version=1, request_id=f"r-{n}", unit_id=None, endpoint=None,
                                 features={"x": float(current[n]), "colour": sample["colour"][n]},
                                 prediction=1, probabilities=None, latency_ms=1.0, predicted_at=when)
               for n in range(200)]
    with db.transaction() as session:
        session.add(VersionBaseline(model_id=model_id, version=1, model_type="classification",
                                    reference_sha256=stored.sha256 if reference else None, reference_rows=300,
                                    feature_kinds={"x": "numeric", "colour": "categorical"}))
        assert store_predictions(session=session, records=records, hash_key="").stored == 200
    return model_id


def _reports(db: Database) -> list[DriftReport]:
    with db.transaction() as session:
        return list(session.scalars(sa.select(DriftReport).order_by(DriftReport.model_id)))


def test_the_sweep_computes_every_served_versions_report_on_the_drift_pool_once_while_fresh(db, settings, worker):
    loaded = load_settings(settings)
    store, rng = ArtifactStore.from_settings(loaded), np.random.default_rng(5)
    shifted = {_served_version(db, store, rng, shifted=True) for _ in range(3)}
    steady = {_served_version(db, store, rng, shifted=False) for _ in range(MODELS - 3)}
    # Not swept: a version without a reference, and one whose predictions are older than the window.
    _served_version(db, store, rng, shifted=True, reference=False)
    _served_version(db, store, rng, shifted=True, hours_ago=loaded.drift_window_hours + 1)
    sender = task_sender(loaded)

    sender.send_task(SWEEP_DRIFT, queue=loaded.task_queue("default"))
    reports = wait_for(lambda: len(_reports(db)) == MODELS and _reports(db), timeout=60, what=f"{MODELS} reports")
    assert {report.model_id for report in reports} == shifted | steady
    assert all(report.window_hours == loaded.drift_window_hours and report.correction == "none" for report in reports)
    assert {report.model_id for report in reports if "x" in report.report["drifted_features"]} == shifted
    # Spread over the pool: ten versions at most per compute task.
    assert len(re.findall(r"Task drift\.compute\[[^]]+\] received", worker.log())) == 3

    sender.send_task(SWEEP_DRIFT, queue=loaded.task_queue("default"))
    wait_for(lambda: len(re.findall(r"Task drift\.sweep\[[^]]+\] succeeded", worker.log())) == 2,
             what="the second sweep to finish")
    time.sleep(0.5)
    assert len(_reports(db)) == MODELS  # every report is fresh: none computed again


def test_the_sweep_takes_the_versions_with_a_reference_that_served_features_in_the_window_and_no_fresh_report(db):
    now, hours = datetime.now(timezone.utc), 24
    served, unserved, featureless, stale, fresh, old = (uuid.uuid4() for _ in range(6))
    # (model, version, features?, hours ago) per prediction; each version below has a reference.
    predictions = [(served, 2, True, 1), (unserved, 1, True, hours + 1), (featureless, 1, False, 1),
                   (stale, 1, True, 2), (fresh, 1, True, 2), (old, 1, True, hours + 2)]
    with db.transaction() as session:
        session.add_all(VersionBaseline(model_id=model_id, version=version, reference_sha256="ab" * 32)
                        for model_id, version in [(served, 1), (served, 2), (unserved, 1), (featureless, 1),
                                                  (stale, 1), (fresh, 1), (old, 1)])
        session.add(VersionBaseline(model_id=uuid.uuid4(), version=1))  # no reference: never swept
        store_predictions(session=session, hash_key="", records=[
            prediction_record(model_id=model_id, version=version, request_id=f"r{n}", prediction=1,
                              features={"x": 1.0} if features else None,
                              predicted_at=now - timedelta(hours=ago))
            for n, (model_id, version, features, ago) in enumerate(predictions)])
        for model_id, age in ((stale, 3600), (fresh, 60)):
            session.add(DriftReport(id=uuid.uuid4(), model_id=model_id, version=1, window_hours=hours,
                                    window_predictions=None, correction="none", overall_drift_score=0.0,
                                    severity="none", report={}, computed_at=now - timedelta(seconds=age)))
    with db.transaction() as session:
        due = served_versions(session, hours=hours, fresh_seconds=600, now=now)
    assert sorted(due) == sorted([(str(served), 2), (str(stale), 1)])


def test_an_anomalous_last_hour_is_recorded_and_announced_once(db, settings, worker):
    loaded = load_settings(settings)
    model_id, rng = uuid.uuid4(), np.random.default_rng(8)
    this_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    records = [prediction_record(model_id=model_id, version=1, request_id=f"h{back}-{n}", prediction=n % 2,
                                 latency_ms=900.0 if back == 1 else float(rng.uniform(18, 22)),
                                 predicted_at=this_hour - timedelta(hours=back) + timedelta(minutes=7 * n))
               for back in range(1, 49) for n in range(6)]
    with db.transaction() as session:
        store_predictions(session=session, records=records, hash_key="")
    sender = task_sender(loaded)

    def recorded() -> tuple[list[DetectedAnomaly], list[OutboxEvent]]:
        with db.transaction() as session:
            return (list(session.scalars(sa.select(DetectedAnomaly))),
                    list(session.scalars(sa.select(OutboxEvent).where(OutboxEvent.type == "anomaly.detected"))))

    sender.send_task(SWEEP_ANOMALIES, queue=loaded.task_queue("default"))
    [anomaly], [event] = wait_for(lambda: recorded()[0] and recorded(), timeout=30, what="the slow hour's anomaly")
    assert (anomaly.model_id, anomaly.metric, anomaly.direction) == (model_id, "latency_p95_ms", "high")
    assert anomaly.value == pytest.approx(900.0, rel=0.01)  # a tallied latency: within 1%
    assert anomaly.bucket_start.replace(tzinfo=timezone.utc) == this_hour - timedelta(hours=1)
    assert event.envelope["payload"]["anomaly_id"] == str(anomaly.id)

    sender.send_task(SWEEP_ANOMALIES, queue=loaded.task_queue("default"))
    wait_for(lambda: len(re.findall(r"Task drift\.detect_anomalies\[[^]]+\] succeeded", worker.log())) == 2,
             what="the hour judged again")
    assert [len(found) for found in recorded()] == [1, 1]
