"""The outbox relay: publishes committed outbox rows in order and marks them sent.

A batch is claimed, published and marked sent in one database transaction. On Postgres the claim is
`FOR UPDATE SKIP LOCKED`, so several relays can share the work; the embedded SQLite has one relay.
A row is marked sent only once the broker confirmed it. When publishing fails part-way, the confirmed
prefix is marked sent, the rest stay unsent and the relay backs off and retries: nothing is lost, and
a message the broker took but could not confirm is sent again (at-least-once; consumers dedupe).

Run one with `python -m shared.events.relay [--consumer package.module:factory ...]`; the consumers
named there get their queues declared before the first publish, so no event is missed before they
first start. The process also seals the audit chain (`shared.audit.seal_forever`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any, Iterable, Protocol, Sequence

import sqlalchemy as sa
from kombu import Connection, Producer

from shared import audit
from shared.config import Settings, load_settings
from shared.db import Database, utcnow
from shared.events import topology
from shared.events.consumer import EventConsumer, load_consumer
from shared.events.dispatch import LocalDispatch
from shared.events.outbox import OutboxEvent

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 5


class PublishFailed(Exception):
    """Publishing stopped part-way; the first `confirmed` envelopes of the batch were confirmed."""

    def __init__(self, confirmed: int, reason: BaseException):
        super().__init__(f"{type(reason).__name__}: {reason}")
        self.confirmed = confirmed


class Publisher(Protocol):
    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class AmqpPublisher:
    """Publishes to the topic exchange with publisher confirms: each publish waits for the broker's ack."""

    def __init__(self, url: str, exchange: str, consumers: Iterable[EventConsumer] = ()):
        self.url = url
        self.exchange = exchange
        self.consumers = list(consumers)
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def _connect(self) -> Producer:
        if self._producer is None:
            connection = Connection(self.url, transport_options={"confirm_publish": True},
                                    connect_timeout=CONNECT_TIMEOUT_SECONDS)
            try:
                # One attempt: the caller owns retries and backoff (kombu would otherwise sleep 2 s here).
                connection.ensure_connection(max_retries=0)
                channel = connection.default_channel
                topology.declare(channel, self.exchange, self.consumers)
            except BaseException:
                connection.collect()
                raise
            self._connection = connection
            self._producer = Producer(channel, exchange=topology.events_exchange(self.exchange))
        return self._producer

    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        confirmed = 0
        try:
            producer = self._connect()
            for envelope in envelopes:
                self._send(producer, envelope)
                confirmed += 1
        except Exception as exc:
            # Whatever broke (refused, reset, nack, confirm timeout), the connection is not to be trusted.
            self.close()
            raise PublishFailed(confirmed, exc) from exc

    def _send(self, producer: Producer, envelope: dict[str, Any]) -> None:
        producer.publish(
            json.dumps(envelope),
            routing_key=envelope["type"],
            message_id=envelope["id"],
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,  # persistent: survives a broker restart in a durable queue
            retry=False,  # the relay owns retries: it must know which rows were confirmed
            confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
        )

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            # collect() frees the connection without talking to a broker that may be gone.
            connection.collect()


class LocalPublisher:
    """The embedded default: hands each envelope to in-process consumers instead of a broker."""

    def __init__(self, dispatch: LocalDispatch):
        self.dispatch = dispatch

    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        for done, envelope in enumerate(envelopes):
            try:
                self.dispatch(envelope)
            except Exception as exc:
                raise PublishFailed(done, exc) from exc

    def close(self) -> None:
        pass


def publisher_from_settings(settings: Settings, consumers: Iterable[EventConsumer] = (),
                            db: Database | None = None) -> AmqpPublisher | LocalPublisher:
    """RabbitMQ when `events_url` is an AMQP URL; in-process dispatch for "local" (then `db` is where
    consumers record their work, by default a new Database on `settings.database_url`)."""
    if settings.events_url == "local":
        db = db or Database(settings.database_url)
        return LocalPublisher(LocalDispatch(db, consumers, max_retries=settings.consumer_max_retries))
    return AmqpPublisher(settings.events_url, settings.events_exchange, consumers)


class Relay:
    def __init__(self, db: Database, publisher: Publisher, batch_size: int = 200, *,
                 min_backoff: float = 0.1, max_backoff: float = 5.0):
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    def _claim(self) -> sa.Select:
        query = (sa.select(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
                 .order_by(OutboxEvent.seq).limit(self.batch_size))
        if self.db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return query

    def run_once(self) -> int:
        """Publish one batch; return how many rows were sent. Raises PublishFailed after marking the
        confirmed part of the batch sent."""
        failure: PublishFailed | None = None
        with self.db.transaction() as session:
            rows = session.scalars(self._claim()).all()
            if not rows:
                return 0
            try:
                self.publisher.publish([row.envelope for row in rows])
                sent = len(rows)
            except PublishFailed as exc:
                failure, sent = exc, exc.confirmed
                rows[sent].attempts += 1
            if sent:
                session.execute(
                    sa.update(OutboxEvent)
                    .where(OutboxEvent.seq.in_([row.seq for row in rows[:sent]]))
                    .values(sent_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        if failure is not None:
            raise failure
        return sent

    def run_forever(self, stop: threading.Event, poll_seconds: float = 0.2) -> None:
        """Relay until `stop` is set: a full batch goes again at once, an empty one waits `poll_seconds`,
        a failure waits a bounded exponential backoff and reconnects."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    sent = self.run_once()
                except Exception as exc:
                    delay = min(self.max_backoff, self.min_backoff * 2 ** failures)
                    failures += 1
                    log.warning("relay failed (%s); unsent events stay in the outbox, retrying in %.1fs",
                                exc, delay)
                    stop.wait(delay)
                    continue
                if failures:
                    log.info("relay recovered after %d failed attempts", failures)
                    failures = 0
                if sent:
                    log.info("relay sent %d events", sent)
                if sent < self.batch_size:
                    stop.wait(poll_seconds)
        finally:
            self.publisher.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a relay process from `MODELYARD_*` settings until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m shared.events.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--consumer", action="append", default=[], metavar="MODULE:FACTORY",
                        help="a consumer whose queue is declared (amqp) or which is dispatched to (local)")
    args = parser.parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    db = Database(settings.database_url)
    consumers = [load_consumer(path) for path in args.consumer]
    relay = Relay(db, publisher_from_settings(settings, consumers, db), batch_size=settings.relay_batch_size)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    target = settings.events_exchange if settings.events_url != "local" else "local consumers"
    log.info("relay started: outbox -> %s", target)
    # The relay's process also seals the audit chain: the same kind of work (drain committed rows in
    # order, in the background), and one process fewer to run.
    sealer = threading.Thread(target=audit.seal_forever, args=(db, stop), name="audit-sealer")
    sealer.start()
    try:
        relay.run_forever(stop, settings.relay_poll_seconds)
    finally:
        stop.set()
        sealer.join(timeout=10)
        db.dispose()
    log.info("relay stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
