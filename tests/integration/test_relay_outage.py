"""The relay across RabbitMQ outages: events wait in the outbox, then all of them leave, none lost.

The relay talks to RabbitMQ through a TCP proxy the test cuts and restores; the test itself watches
the exchange over a direct connection.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import sqlalchemy as sa
from kombu import Connection, Queue

from shared.config import load_settings
from shared.db import Database
from shared.events import topology
from shared.events.catalogue import build_envelope
from shared.events.consumer import EventConsumer
from shared.events.outbox import OutboxEvent, emit
from shared.events.relay import AmqpPublisher, PublishFailed, Relay
from shared.events.runner import ConsumerRunner
from tests.support.polling import wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def emit_datasets(db: Database, count: int) -> list[str]:
    with db.transaction() as session:
        return [str(emit(session, "dataset.registered",
                         {"dataset_id": uuid.uuid4(), "name": f"d{i}", "sha256": "ab" * 32, "rows": i,
                          "actor": "alice"}, producer="registry"))
                for i in range(count)]


def unsent(db: Database) -> int:
    with db.transaction() as session:
        return session.scalar(sa.select(sa.func.count()).where(OutboxEvent.sent_at.is_(None)))


@pytest.fixture
def settings(settings_overrides):
    return load_settings(settings_overrides)


@pytest.fixture
def db(settings, clean_db):
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def proxy(settings):
    tcp_proxy = TcpProxy.for_url(settings.events_url)
    yield tcp_proxy
    tcp_proxy.cut()


@pytest.fixture
def received(settings):
    """Event ids that reached the exchange, in arrival order, read from a queue bound to every type."""
    with Connection(settings.events_url) as connection:
        channel = connection.default_channel
        topology.declare(channel, settings.events_exchange)
        queue = Queue(f"{settings.events_exchange}.outage-{uuid.uuid4().hex[:8]}",
                      topology.events_exchange(settings.events_exchange), routing_key="#", exclusive=True)
        queue.bind(channel).declare()
        ids: list[str] = []

        def drain() -> list[str]:
            while (message := channel.basic_get(queue.name, no_ack=True)) is not None:
                ids.append(json.loads(message.body)["id"])
            return ids

        yield drain
        topology.delete(channel, settings.events_exchange)


class CuttingPublisher(AmqpPublisher):
    """Cuts the proxy once the broker confirmed the first `cut_after` messages: an outage mid-batch,
    between the confirmed messages and the rest."""

    def __init__(self, url: str, exchange: str, *, proxy: TcpProxy, cut_after: int):
        super().__init__(url, exchange)
        self.proxy = proxy
        self.cut_after = cut_after
        self.sent = 0

    def _send(self, channel, envelope):
        if self.sent == self.cut_after:
            self._await_confirms()
            self.proxy.cut()
        super()._send(channel, envelope)
        self.sent += 1


def test_events_written_while_rabbitmq_is_unreachable_stay_unsent_and_all_leave_once_it_is_back(
        settings, db, proxy, received):
    relay = Relay(db, AmqpPublisher(proxy.url_for(settings.events_url), settings.events_exchange), batch_size=50)
    proxy.cut()
    emitted = emit_datasets(db, 5)

    with pytest.raises(PublishFailed):
        relay.run_once()
    assert unsent(db) == 5
    with db.transaction() as session:
        assert session.scalar(sa.select(OutboxEvent.attempts).order_by(OutboxEvent.seq).limit(1)) == 1

    proxy.restore()
    assert relay.run_once() == 5
    relay.publisher.close()
    assert unsent(db) == 0
    assert received() == emitted


def test_a_cut_in_the_middle_of_a_batch_loses_nothing_and_duplicates_nothing(settings, db, proxy, received):
    publisher = CuttingPublisher(proxy.url_for(settings.events_url), settings.events_exchange,
                                 proxy=proxy, cut_after=4)
    relay = Relay(db, publisher, batch_size=50)
    emitted = emit_datasets(db, 10)

    with pytest.raises(PublishFailed) as failure:
        relay.run_once()
    assert failure.value.confirmed == 4
    assert unsent(db) == 6  # the confirmed part of the batch is marked sent, the rest waits

    proxy.restore()
    publisher.cut_after = -1
    assert relay.run_once() == 6
    publisher.close()
    assert received() == emitted


def test_a_running_relay_backs_off_through_an_outage_and_resumes_by_itself(settings, db, proxy, received):
    relay = Relay(db, AmqpPublisher(proxy.url_for(settings.events_url), settings.events_exchange),
                  batch_size=50, max_backoff=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run_forever, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        before = emit_datasets(db, 3)
        wait_for(lambda: unsent(db) == 0, timeout=20.0)

        proxy.cut()
        during = emit_datasets(db, 7)
        with db.transaction() as session:
            wait_for(lambda: session.scalar(sa.select(sa.func.max(OutboxEvent.attempts))) >= 2, timeout=20.0)
        assert unsent(db) == 7

        proxy.restore()
        wait_for(lambda: unsent(db) == 0, timeout=20.0)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    wait_for(lambda: len(received()) >= 10, timeout=20.0)
    assert received() == before + during


class Recorder(EventConsumer):
    def __init__(self):
        self.name = f"outage-recorder-{uuid.uuid4().hex[:8]}"
        self.routing_keys = ("dataset.#",)
        self.handled: list[str] = []

    def handle(self, session, envelope):
        self.handled.append(envelope["id"])


def test_a_consumer_reconnects_after_an_outage_and_gets_what_was_published_meanwhile(settings, db, proxy):
    consumer = Recorder()
    runner = ConsumerRunner(db, consumer, proxy.url_for(settings.events_url), settings.events_exchange)
    publisher = AmqpPublisher(settings.events_url, settings.events_exchange, [consumer])
    first, second = (build_envelope("dataset.registered", {"dataset_id": uuid.uuid4(), "name": "d", "sha256": "ab",
                                                          "rows": 1, "actor": "alice"}, producer="registry")
                     for _ in range(2))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop, 0.05), daemon=True)
    try:
        publisher.publish([first])
        thread.start()
        wait_for(lambda: consumer.handled == [first["id"]], timeout=20.0)
        proxy.cut()
        publisher.publish([second])  # straight to RabbitMQ: the queue keeps it while the consumer is away
        proxy.restore()
        wait_for(lambda: consumer.handled == [first["id"], second["id"]], timeout=20.0)
    finally:
        stop.set()
        thread.join(timeout=10)
        publisher.close()
        with Connection(settings.events_url) as connection:
            topology.delete(connection.default_channel, settings.events_exchange, [consumer])
