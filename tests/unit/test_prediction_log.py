"""Serving's prediction log: a bounded buffer that never blocks a prediction, sent in batches by size or
time. Tasks go through Celery to kombu's in-memory transport and are read back from its queue;
tests/integration/test_prediction_logging.py does the same through RabbitMQ to a worker and the database."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone

import pytest
from kombu import Connection
from prometheus_client import CollectorRegistry

from services.serving.prediction_log import PredictionLog
from shared.config import Settings
from shared.prediction_records import STORE_PREDICTIONS, prediction_record
from shared.tasks import task_sender
from tests.support.polling import wait_for


def records(count: int) -> list[dict]:
    model_id = uuid.uuid4()
    now = datetime.now(timezone.utc)
    return [prediction_record(model_id=model_id, version=1, request_id=f"r{n}", predicted_at=now, prediction=n)
            for n in range(count)]


@pytest.fixture
def queue() -> str:
    return f"ingest-{uuid.uuid4().hex[:8]}"  # the in-memory broker is one per process: a queue per test


@pytest.fixture
def sender():
    return task_sender(Settings(broker_url="memory://"))


def batches(queue: str) -> list[list[dict]]:
    """The record batches of the tasks waiting on `queue`, taken off it."""
    found = []
    with Connection("memory://") as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            assert message.headers["task"] == STORE_PREDICTIONS
            (batch,), _, _ = message.decode()
            found.append(batch)
    return found


class FailingSender:
    """Refuses the first `failures` sends, as a broker that is down does, then sends through `sender`."""

    def __init__(self, sender, failures: int):
        self.sender = sender
        self.failures = failures

    def send_task(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("broker down")
        return self.sender.send_task(*args, **kwargs)


def test_a_full_buffer_keeps_what_fits_and_counts_the_rest_as_dropped(sender, queue, caplog):
    registry = CollectorRegistry()
    # Nothing is sent until close: no batch fills up and the timer is a minute away.
    log = PredictionLog(sender, queue, capacity=100, batch_size=1000, flush_seconds=60, registry=registry)
    with caplog.at_level(logging.WARNING, logger="services.serving.prediction_log"):
        log.add(records(150))
        log.add(records(10))
    assert (len(log), log.dropped) == (100, 60)
    assert registry.get_sample_value("modelyard_prediction_log_dropped_records_total",
                                     {"reason": "buffer_full"}) == 60
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1  # at most once a minute
    log.close()
    assert [len(batch) for batch in batches(queue)] == [100]


def test_a_batch_is_sent_as_soon_as_it_is_full(sender, queue):
    log = PredictionLog(sender, queue, batch_size=10, flush_seconds=60)
    sent = records(25)
    log.add(sent)
    arrived: list[list[dict]] = []
    wait_for(lambda: arrived.extend(batches(queue)) or len(arrived) == 2, what="two full batches")
    assert [len(batch) for batch in arrived] == [10, 10]
    log.close()
    arrived += batches(queue)
    assert [record for batch in arrived for record in batch] == sent
    assert (log.sent, log.dropped) == (25, 0)


def test_what_is_buffered_is_sent_within_the_flush_interval(sender, queue):
    log = PredictionLog(sender, queue, batch_size=500, flush_seconds=0.05)
    sent = records(3)
    log.add(sent)
    started = time.monotonic()
    assert wait_for(lambda: batches(queue), timeout=2, what="the timed flush") == [sent]
    assert time.monotonic() - started < 1
    log.close()


def test_a_failed_send_keeps_its_batch_and_sends_it_when_the_broker_is_back(sender, queue):
    registry = CollectorRegistry()
    log = PredictionLog(FailingSender(sender, failures=3), queue, flush_seconds=0.01, registry=registry)
    sent = records(5)
    log.add(sent)
    assert wait_for(lambda: batches(queue), what="the batch, on the fourth attempt") == [sent]
    assert (log.failed_sends, log.dropped) == (3, 0)
    assert registry.get_sample_value("modelyard_prediction_log_failed_sends_total") == 3
    log.close()


def test_a_batch_the_broker_refuses_every_time_is_dropped_and_counted(sender, queue):
    log = PredictionLog(FailingSender(sender, failures=10**6), queue, flush_seconds=0.01, send_attempts=3)
    log.add(records(7))
    wait_for(lambda: log.dropped == 7, what="the batch given up")
    assert log.failed_sends == 3
    log.close(timeout=1)


def test_a_record_json_cannot_carry_is_dropped_alone(sender, queue):
    registry = CollectorRegistry()
    log = PredictionLog(sender, queue, flush_seconds=0.01, registry=registry)
    sent = records(4)
    log.add(sent[:2] + [{**sent[0], "prediction": object()}] + sent[2:])  # e.g. a numpy value not .tolist()-ed
    assert wait_for(lambda: batches(queue), what="the batch without it") == [sent]
    assert registry.get_sample_value("modelyard_prediction_log_dropped_records_total", {"reason": "not_json"}) == 1
    log.close()


def test_add_never_raises():
    class Unreachable:
        def send_task(self, *args, **kwargs):
            raise AssertionError("nothing to send")

    log = PredictionLog(Unreachable(), "unused", flush_seconds=60)
    log.add(None)  # type: ignore[arg-type]
    log.add([])
    assert len(log) == 0


def test_close_sends_everything_left_in_batches(sender, queue):
    log = PredictionLog(sender, queue, batch_size=4, flush_seconds=60)
    log.add(records(3))
    log.close()
    assert [len(batch) for batch in batches(queue)] == [3]
