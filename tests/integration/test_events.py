"""Events end to end on real Postgres and RabbitMQ: outbox -> relay -> exchange -> consumers.

Every test uses this run's exchange and its own consumer names, and deletes what it declared.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from kombu import Connection, Producer, Queue

from shared.config import load_settings
from shared.db import Database, utcnow
from shared.events import topology
from shared.events.catalogue import build_envelope
from shared.events.consumer import EventConsumer, ProcessedEvent, process
from shared.events.outbox import OutboxEvent, emit
from shared.events.relay import AmqpPublisher, PublishFailed, Relay, publisher_from_settings
from shared.events.runner import RETRIES_HEADER, ConsumerRunner
from shared.tasks import attach_celery, enqueue_after_commit
from workers.celery_app import make_celery
from workers.database_task import worker_database
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration


def dataset_payload() -> dict:
    return {"dataset_id": uuid.uuid4(), "name": "iris", "sha256": "ab" * 32, "rows": 150, "actor": "alice"}


def emit_dataset(db: Database) -> str:
    with db.transaction() as session:
        return str(emit(session, "dataset.registered", dataset_payload(), producer="registry"))


def get_all(channel, queue_name: str) -> list:
    messages = []
    while (message := channel.basic_get(queue_name, no_ack=True)) is not None:
        messages.append(message)
    return messages


class Recorder(EventConsumer):
    """Remembers each envelope it handles; optionally fails every time, like a handler with a bug."""

    def __init__(self, routing_keys=("dataset.registered",), *, fail: bool = False, pause: float = 0.0):
        self.name = f"recorder-{uuid.uuid4().hex[:8]}"
        self.routing_keys = routing_keys
        self.fail = fail
        self.pause = pause
        self.handled: list[str] = []

    def handle(self, session, envelope):
        self.handled.append(envelope["id"])
        time.sleep(self.pause)
        if self.fail:
            raise RuntimeError("handler bug")


@pytest.fixture
def settings(settings_overrides):
    return load_settings(settings_overrides)


@pytest.fixture
def db(settings, clean_db):
    database = Database(settings.database_url)
    yield database
    database.dispose()


class Broker:
    """The test's own connection, for looking into queues, and the topology it declared."""

    def __init__(self, settings, connection: Connection):
        self.exchange = settings.events_exchange
        self.channel = connection.default_channel
        self.subscribers: list[EventConsumer] = []

    def declare(self, *consumers: EventConsumer):
        self.subscribers.extend(consumers)
        topology.declare(self.channel, self.exchange, consumers)
        return self.channel


@pytest.fixture
def broker(settings):
    with Connection(settings.events_url) as connection:
        declared = Broker(settings, connection)
        yield declared
        topology.delete(declared.channel, settings.events_exchange, declared.subscribers)


def probe_queue(channel, exchange: str, routing_key: str = "#") -> str:
    """An exclusive queue bound to the exchange, gone when the test's connection closes."""
    queue = Queue(f"{exchange}.probe-{uuid.uuid4().hex[:8]}", topology.events_exchange(exchange),
                  routing_key=routing_key, exclusive=True)
    queue.bind(channel).declare()
    return queue.name


@contextlib.contextmanager
def running(runner: ConsumerRunner):
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop, 0.1), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_committed_event_reaches_a_bound_queue_and_a_rolled_back_one_never_does(settings, db, broker):
    channel = broker.declare()
    queue = probe_queue(channel, settings.events_exchange)
    committed = emit_dataset(db)
    with pytest.raises(RuntimeError), db.transaction() as session:
        emit(session, "dataset.registered", dataset_payload(), producer="registry")
        raise RuntimeError("the change failed after the event was written")

    relay = Relay(db, AmqpPublisher(settings.events_url, settings.events_exchange), batch_size=50)
    try:
        assert relay.run_once() == 1
        assert relay.run_once() == 0
    finally:
        relay.publisher.close()

    [message] = get_all(channel, queue)
    assert json.loads(message.body)["id"] == committed
    assert message.properties["message_id"] == committed
    assert message.delivery_info["routing_key"] == "dataset.registered"
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).where(OutboxEvent.sent_at.is_(None))) == 0


def test_the_relay_publishes_in_outbox_order_across_batches(settings, db, broker):
    channel = broker.declare()
    queue = probe_queue(channel, settings.events_exchange)
    emitted = [emit_dataset(db) for _ in range(7)]
    relay = Relay(db, AmqpPublisher(settings.events_url, settings.events_exchange), batch_size=3)
    try:
        assert [relay.run_once() for _ in range(4)] == [3, 3, 1, 0]
    finally:
        relay.publisher.close()
    assert [json.loads(m.body)["id"] for m in get_all(channel, queue)] == emitted


def test_a_nack_in_the_middle_of_a_batch_marks_only_the_messages_confirmed_before_it_sent(settings, db, broker):
    channel = broker.declare()
    # A queue that takes four messages and refuses more: the broker nacks the fifth and later ones.
    full = Queue(f"{settings.events_exchange}.full-{uuid.uuid4().hex[:8]}",
                 topology.events_exchange(settings.events_exchange), routing_key="#", exclusive=True,
                 queue_arguments={"x-max-length": 4, "x-overflow": "reject-publish"})
    full.bind(channel).declare()
    emitted = [emit_dataset(db) for _ in range(10)]
    relay = Relay(db, AmqpPublisher(settings.events_url, settings.events_exchange), batch_size=50)
    try:
        with pytest.raises(PublishFailed) as failure:
            relay.run_once()
        assert failure.value.confirmed == 4
        with db.transaction() as session:
            rows = session.execute(sa.select(OutboxEvent.sent_at, OutboxEvent.attempts)
                                   .order_by(OutboxEvent.seq)).all()
        assert [(row.sent_at is not None, row.attempts) for row in rows] == \
            [(True, 0)] * 4 + [(False, 1)] + [(False, 0)] * 5
        assert [json.loads(m.body)["id"] for m in get_all(channel, full.name)] == emitted[:4]

        with pytest.raises(PublishFailed) as failure:  # the queue has room for four more
            relay.run_once()
        assert failure.value.confirmed == 4
    finally:
        relay.publisher.close()
    assert [json.loads(m.body)["id"] for m in get_all(channel, full.name)] == emitted[4:8]


def test_an_event_delivered_twice_is_handled_once(settings, db, broker):
    consumer = Recorder()
    broker.declare(consumer)
    twice = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    after = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    publisher = AmqpPublisher(settings.events_url, settings.events_exchange)
    publisher.publish([twice, twice, after])
    publisher.close()

    with running(ConsumerRunner(db, consumer, settings.events_url, settings.events_exchange)):
        wait_for(lambda: after["id"] in consumer.handled)
    assert consumer.handled == [twice["id"], after["id"]]
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).where(ProcessedEvent.consumer == consumer.name)) == 2


def test_two_deliveries_racing_each_other_are_handled_once(db):
    consumer = Recorder(pause=0.3)
    envelope = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    outcomes: list[bool] = []
    threads = [threading.Thread(target=lambda: outcomes.append(process(db, consumer, envelope))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False, True]
    assert consumer.handled == [envelope["id"]]


def test_a_handler_that_always_fails_ends_in_the_dead_letter_queue_after_bounded_retries(settings, db, broker):
    consumer = Recorder(fail=True)
    channel = broker.declare(consumer)
    envelope = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    publisher = AmqpPublisher(settings.events_url, settings.events_exchange)
    publisher.publish([envelope])
    publisher.close()
    dead_queue = topology.dead_letter_queue(settings.events_exchange, consumer).name

    runner = ConsumerRunner(db, consumer, settings.events_url, settings.events_exchange,
                            max_retries=2, retry_delay=0.05)
    with running(runner):
        [dead] = wait_for(lambda: get_all(channel, dead_queue))
    assert json.loads(dead.body)["id"] == envelope["id"]
    assert dead.headers[RETRIES_HEADER] == 2
    assert consumer.handled == [envelope["id"]] * 3  # the first try and two retries
    with db.transaction() as session:
        # Each failed attempt rolled back, the processed mark included.
        assert session.scalar(sa.select(sa.func.count()).select_from(ProcessedEvent)) == 0


def test_a_malformed_message_goes_straight_to_the_dead_letter_queue(settings, db, broker):
    consumer = Recorder()
    channel = broker.declare(consumer)
    valid = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    bodies = ["not json at all", json.dumps({k: v for k, v in valid.items() if k != "id"}),
              json.dumps({**valid, "type": "dataset.vanished"})]
    producer = Producer(channel, exchange=topology.events_exchange(settings.events_exchange))
    for body in bodies:
        producer.publish(body, routing_key="dataset.registered", content_type="application/json",
                         content_encoding="utf-8")
    dead_queue = topology.dead_letter_queue(settings.events_exchange, consumer).name

    with running(ConsumerRunner(db, consumer, settings.events_url, settings.events_exchange)):
        dead: list = []
        wait_for(lambda: dead.extend(get_all(channel, dead_queue)) or len(dead) == len(bodies))
    assert sorted(m.body for m in dead) == sorted(bodies)
    assert all(RETRIES_HEADER not in (m.headers or {}) for m in dead)
    assert consumer.handled == []


def test_local_dispatch_hands_events_to_matching_subscribers_once(settings_overrides, db):
    datasets, models, failing = Recorder(("dataset.*",)), Recorder(("model.#",)), Recorder(("#",), fail=True)
    settings = load_settings({**settings_overrides, "events_url": "local", "consumer_max_retries": 1})
    publisher = publisher_from_settings(settings, [datasets, models, failing], db=db)
    relay = Relay(db, publisher, batch_size=10)
    event_id = emit_dataset(db)

    assert relay.run_once() == 1
    publisher.publish(_envelopes(db))  # a duplicate delivery
    assert datasets.handled == [event_id]
    assert models.handled == []
    # A subscriber that keeps failing is retried, then given up on, so it cannot stall the outbox.
    assert failing.handled == [event_id] * 4
    assert relay.run_once() == 0


def _envelopes(db: Database) -> list[dict]:
    with db.transaction() as session:
        return [row.envelope for row in session.scalars(sa.select(OutboxEvent))]


def test_the_hourly_purge_deletes_only_outbox_rows_sent_over_a_week_ago(settings, db):
    import workers.maintenance  # noqa: F401  registers the task

    ids = [emit_dataset(db) for _ in range(3)]
    now = utcnow()
    with db.transaction() as session:
        rows = {str(row.event_id): row for row in session.scalars(sa.select(OutboxEvent))}
        rows[ids[0]].sent_at = now - timedelta(days=8)
        rows[ids[1]].sent_at = now - timedelta(days=6)
    app = make_celery(settings)
    try:
        assert app.conf.beat_schedule["purge-sent-outbox"]["schedule"] == 3600
        assert app.tasks["workers.maintenance.purge_sent_outbox"].apply().get() == 1
    finally:
        worker_database(settings.database_url).dispose()
        worker_database.cache_clear()
    with db.transaction() as session:
        assert {str(i) for i in session.scalars(sa.select(OutboxEvent.event_id))} == set(ids[1:])


@pytest.mark.parametrize("broker_kind", ["rabbitmq", "embedded"])
def test_a_task_is_enqueued_only_when_its_transaction_commits(settings_overrides, db, tmp_path, broker_kind):
    broker_url = settings_overrides["broker_url"] if broker_kind == "rabbitmq" else \
        f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    app = make_celery(load_settings({**settings_overrides, "broker_url": broker_url}))
    attach_celery(db, app)
    queue = f"modelyard-test-{uuid.uuid4().hex[:10]}"

    with pytest.raises(RuntimeError), db.transaction() as session:
        emit(session, "dataset.registered", dataset_payload(), producer="registry")
        enqueue_after_commit(session, "workers.maintenance.purge_sent_outbox", queue=queue)
        raise RuntimeError("the request failed")
    with db.transaction() as session:
        emit(session, "dataset.registered", dataset_payload(), producer="registry")
        enqueue_after_commit(session, "workers.maintenance.purge_sent_outbox", "kept", queue=queue)

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        try:
            message = wait_for(lambda: channel.basic_get(queue, no_ack=True))
            assert message.headers["task"] == "workers.maintenance.purge_sent_outbox"
            assert json.loads(message.body)[0] == ["kept"]
            assert channel.basic_get(queue, no_ack=True) is None
        finally:
            if broker_kind == "rabbitmq":
                channel.queue_delete(queue)
                channel.exchange_delete(queue)
    app.close()


@pytest.mark.postgres_only  # SQLite runs one relay: make run has one web worker
def test_two_relays_running_side_by_side_publish_each_event_exactly_once(settings, db, broker):
    channel = broker.declare()
    queue = probe_queue(channel, settings.events_exchange)
    with db.transaction() as session:
        emitted = {str(emit(session, "dataset.registered", dataset_payload(), producer="registry"))
                   for _ in range(60)}
    relays = [Relay(db, AmqpPublisher(settings.events_url, settings.events_exchange), batch_size=5)
              for _ in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=relay.run_forever, args=(stop, 0.02), daemon=True) for relay in relays]
    for thread in threads:
        thread.start()
    received: list[str] = []
    try:
        wait_for(lambda: received.extend(json.loads(m.body)["id"] for m in get_all(channel, queue))
                 or len(received) >= len(emitted))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    received += [json.loads(m.body)["id"] for m in get_all(channel, queue)]
    assert sorted(received) == sorted(emitted)
