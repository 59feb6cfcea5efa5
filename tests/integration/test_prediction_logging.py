"""Prediction records travel from serving's PredictionLog through RabbitMQ to a real Celery worker of the
ingest pool, which stores them in monitoring's predictions table: on Postgres and on SQLite."""

from __future__ import annotations

import math
import time
import uuid
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from launch.gunicorn_hooks import worker_exit
from services.monitoring.ingestion import store_predictions
from services.monitoring.tables import Prediction
from services.serving.prediction_log import PredictionLog
from shared.config import load_settings
from shared.db import Database
from shared.prediction_records import QUEUE, prediction_record
from shared.tasks import task_sender
from tests.conftest import RUN_ID
from tests.support.databases import empty_tables
from tests.support.polling import wait_for
from tests.support.training import celery_worker, training_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    return training_settings(database_url, servers, tmp_path_factory.mktemp("ingest"), RUN_ID)


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
    with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log", concurrency=1,
                       pools=(QUEUE,)) as running:
        yield running


@pytest.fixture
def prediction_log(settings, worker):
    loaded = load_settings(settings)
    log = PredictionLog(task_sender(loaded), loaded.task_queue(QUEUE), flush_seconds=0.05)
    yield log
    log.close()


def records(count: int, *, model_id: uuid.UUID | None = None, first: int = 0) -> list[dict]:
    model_id = model_id or uuid.uuid4()
    now = datetime.now(timezone.utc)
    return [prediction_record(model_id=model_id, version=2, request_id=f"req-{n}", unit_id=f"user-{n % 7}",
                              endpoint="churn-production", features={"age": 30 + n % 50, "plan": "pro"},
                              prediction=n % 2, probabilities={"0": 0.25, "1": 0.75}, latency_ms=1.5,
                              predicted_at=now - timedelta(milliseconds=n))
            for n in range(first, first + count)]


def stored(db: Database, model_id: str | None = None) -> list[Prediction]:
    with db.transaction() as session:
        query = sa.select(Prediction).order_by(Prediction.request_id)
        if model_id:
            query = query.where(Prediction.model_id == uuid.UUID(model_id))
        return list(session.scalars(query))


def test_every_logged_prediction_reaches_the_store_with_its_fields(db, prediction_log):
    sent = records(1200)
    for record in sent:  # one add per prediction, as serving calls it
        prediction_log.add([record])
    rows = wait_for(lambda: len(stored(db)) == len(sent) and stored(db), timeout=30, what="1,200 rows")
    first = next(row for row in rows if row.request_id == "req-0")
    assert (str(first.model_id), first.version, first.endpoint, first.unit_id) == \
        (sent[0]["model_id"], 2, "churn-production", "user-0")
    assert (first.features, first.prediction, first.probabilities, first.latency_ms) == \
        ({"age": 30, "plan": "pro"}, 0, {"0": 0.25, "1": 0.75}, 1.5)
    assert first.predicted_at.replace(tzinfo=first.predicted_at.tzinfo or timezone.utc) == \
        datetime.fromisoformat(sent[0]["predicted_at"])
    assert first.error is None and first.deployment_id is None and first.received_at is not None
    assert prediction_log.dropped == 0


def test_a_request_id_is_stored_once_per_model(db, prediction_log):
    model_id = uuid.uuid4()
    prediction_log.add(records(10, model_id=model_id))
    wait_for(lambda: len(stored(db)) == 10, what="the first ten")
    # Sent again (a producer retrying), and overlapping within one batch: still one row per request id.
    again = records(10, model_id=model_id, first=5)
    prediction_log.add(again + again[:3])
    # The same request ids for another model are that model's own.
    prediction_log.add(records(3, model_id=uuid.uuid4()))
    wait_for(lambda: len(stored(db)) == 18, what="15 rows of the first model and 3 of the other")
    time.sleep(0.3)  # a batch that would double rows would have landed by now
    assert sorted(row.request_id for row in stored(db, str(model_id))) == sorted(f"req-{n}" for n in range(15))


def test_a_web_worker_that_stops_sends_what_its_prediction_log_still_holds(db, settings, worker, make_app):
    app = make_app(settings)
    loaded = load_settings(settings)
    # Neither a full batch nor a flush is due before the worker stops: only closing sends these.
    log = PredictionLog(task_sender(loaded), loaded.task_queue(QUEUE), flush_seconds=3600, batch_size=10_000)
    app.extensions["modelyard"].closers.append(log.close)
    log.add(records(50))
    time.sleep(0.3)
    assert stored(db) == [] and len(log) == 50
    worker_exit(None, SimpleNamespace(wsgi=app))  # gunicorn calls it in the worker as it stops
    wait_for(lambda: len(stored(db)) == 50, what="the fifty buffered records")


def test_a_poison_record_does_not_cost_its_batch(db, prediction_log, worker):
    good = records(20)
    poison = [
        {**good[0], "request_id": "nul\x00byte"},  # Postgres stores no NUL
        {**good[0], "request_id": "nan", "prediction": float("nan")},  # nor NaN in JSONB
        {**good[0], "request_id": "naive", "predicted_at": "2026-01-01T00:00:00"},
        {**good[0], "request_id": "x" * 300},
        {**good[0], "request_id": "lone-\ud800-surrogate"},  # which JSON carries and UTF-8 cannot
        {**good[0], "request_id": "no-model", "model_id": "not-a-uuid"},
        {"unexpected": True},
        "not a record",
    ]
    prediction_log.add(good[:10] + poison + good[10:])
    wait_for(lambda: len(stored(db)) == 20, what="the twenty good records")
    assert "rejected 8" in wait_for(lambda: "rejected 8" in worker.log() and worker.log(), what="the rejections logged")


def test_a_feature_that_is_not_a_number_is_stored_as_missing(db):
    [record] = records(1)
    record["features"] = {"age": math.inf, "income": float("nan"), "plan": "pro"}
    with db.transaction() as session:
        outcome = store_predictions(session=session, records=[record], hash_key="")
    assert (outcome.stored, outcome.rejected) == (1, [])
    assert stored(db)[0].features == {"age": None, "income": None, "plan": "pro"}


def test_a_failed_prediction_is_stored_with_its_error_and_no_output(db):
    [record] = records(1)
    failed = {**record, "prediction": None, "probabilities": None, "error": "model not loaded"}
    no_output = {**record, "request_id": "neither", "prediction": None}
    with db.transaction() as session:
        outcome = store_predictions(session=session, records=[failed, no_output], hash_key="")
    assert (outcome.stored, [index for index, _ in outcome.rejected]) == (1, [1])
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).where(Prediction.prediction.is_(None))) == 1


def test_a_batch_stored_twice_reports_its_duplicates(db):
    batch = records(50)
    with db.transaction() as session:
        first = store_predictions(session=session, records=batch, hash_key="")
    with db.transaction() as session:
        second = store_predictions(session=session, records=batch, hash_key="")
    assert (first.stored, first.duplicates, second.stored, second.duplicates) == (50, 0, 0, 50)


def test_a_record_the_checks_miss_and_the_database_refuses_costs_only_itself(db):
    batch = records(30)
    # An integer JSON cannot write out (Python's 4,300-digit limit): the multi-row statement fails whole.
    batch[12]["features"] = {"age": 10**5000}
    with db.transaction() as session:
        outcome = store_predictions(session=session, records=batch, hash_key="")
    assert (outcome.stored, [index for index, _ in outcome.rejected]) == (29, [12])
    assert len(stored(db)) == 29


def test_the_ingest_worker_stores_a_models_sensitive_features_protected(db, settings, prediction_log):
    from services.monitoring.handlers import SensitiveFeatureLists, VersionBaselines
    from services.monitoring.sensitive import Protector, platform_key
    from shared.events.catalogue import build_envelope
    from shared.events.consumer import process

    model_id = uuid.uuid4()
    edges = {"age": [20.0, 40.0, 60.0, 70.0]}
    # What monitoring has heard from the registry: the model's list, and version 2's profile bins.
    process(db, SensitiveFeatureLists(), build_envelope("model.created", {
        "model_id": model_id, "name": "m", "status": "registered", "actor": "dana",
        "sensitive_features": ["age", "plan"]}, producer="registry"))
    process(db, VersionBaselines(), build_envelope("model_version.registered", {
        "model_id": model_id, "version": 2, "artifact_sha256": "0" * 64, "actor": "dana",
        "feature_kinds": {"age": "numeric", "plan": "categorical"}, "bin_edges": edges}, producer="registry"))
    prediction_log.add(records(60, model_id=model_id))
    rows = wait_for(lambda: len(stored(db)) == 60 and stored(db), what="sixty protected rows")
    expected = Protector(key=platform_key(settings["feature_hash_key"]), model_id=model_id, features=["age", "plan"],
                         kinds={"age": "numeric", "plan": "categorical"}, bin_edges=edges)
    ages = {row.request_id: row.features["age"] for row in rows}
    assert (ages["req-0"], ages["req-40"], ages["req-45"]) == ("[20.0, 40.0)", "[60.0, 70.0]", "> 70.0")  # 30, 70, 75
    assert all(row.features == {"age": expected.value("age", 30 + int(row.request_id[4:]) % 50),
                                "plan": expected.value("plan", "pro")} for row in rows)
    assert rows[0].features["plan"].startswith("hmac:") and settings["feature_hash_key"]
