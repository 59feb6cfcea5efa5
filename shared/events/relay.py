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
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from typing import Any, Iterable, Iterator, Protocol, Sequence

import amqp
import sqlalchemy as sa
from amqp import spec
from amqp.exceptions import MessageNacked
from kombu import Connection

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


class _Confirms:
    """The broker's answers on a channel in confirm mode, where messages are numbered 1, 2, ... (their
    delivery tags) in publish order. One answer may cover every earlier unanswered tag (`multiple`),
    and answers may arrive out of order."""

    def __init__(self) -> None:
        self.published = 0
        self.acked_through = 0  # every tag up to this one was acked
        self.first_nacked: int | None = None
        self._acked_ahead: set[int] = set()  # acked singly while an earlier tag was still unanswered

    def on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.acked_through = max(self.acked_through, tag)
            if self._acked_ahead:
                self._acked_ahead = {ahead for ahead in self._acked_ahead if ahead > tag}
        else:
            self._acked_ahead.add(tag)
        while self.acked_through + 1 in self._acked_ahead:
            self.acked_through += 1
            self._acked_ahead.remove(self.acked_through)

    def on_nack(self, tag: int, multiple: bool) -> None:
        # With `multiple`, the first unanswered tag is among those refused.
        refused = self.acked_through + 1 if multiple else tag
        if self.first_nacked is None or refused < self.first_nacked:
            self.first_nacked = refused

    @property
    def settled(self) -> bool:
        """Nothing left to wait for: every message was acked, or every one before the first nacked."""
        if self.acked_through == self.published:
            return True
        return self.first_nacked is not None and self.acked_through == self.first_nacked - 1


@contextlib.contextmanager
def _corked(sock: socket.socket) -> Iterator[None]:
    """Hold back partial TCP segments while a batch is written, so it leaves in a few full ones
    rather than a segment (and its kernel work) per message. Linux only; elsewhere a no-op."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


class AmqpPublisher:
    """Publishes to the topic exchange with publisher confirms: a batch goes out whole, then the relay
    waits once for the broker's acks (one round trip per batch, not per message)."""

    def __init__(self, url: str, exchange: str, consumers: Iterable[EventConsumer] = ()):
        self.url = url
        self.exchange = exchange
        self.consumers = list(consumers)
        self._connection: Connection | None = None
        self._channel: amqp.Channel | None = None
        self._confirms = _Confirms()

    def _connect(self) -> amqp.Channel:
        if self._channel is None:
            connection = Connection(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
            try:
                # One attempt: the caller owns retries and backoff (kombu would otherwise sleep 2 s here).
                connection.ensure_connection(max_retries=0)
                channel = connection.default_channel
                topology.declare(channel, self.exchange, self.consumers)
                channel.confirm_select()
            except BaseException:
                connection.collect()
                raise
            channel.events["basic_ack"].add(self._confirms.on_ack)
            channel.events["basic_nack"].add(self._confirms.on_nack)
            self._connection, self._channel = connection, channel
        return self._channel

    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        # Every earlier message on the channel was acked: a batch that ends otherwise drops the connection.
        start = self._confirms.acked_through
        try:
            channel = self._connect()
            # A broker that stops reading (a memory or disk alarm) must not hold a batch's writes forever:
            # py-amqp's TCP_USER_TIMEOUT ends them on Linux, this socket timeout everywhere else.
            with channel.connection.transport.having_timeout(CONFIRM_TIMEOUT_SECONDS) as sock, _corked(sock):
                for envelope in envelopes:
                    self._send(channel, envelope)
            self._await_confirms()
        except Exception as exc:
            # Whatever broke (refused, reset, nack, confirm timeout), the connection is not to be trusted.
            confirmed = self._confirms.acked_through - start
            self.close()
            raise PublishFailed(confirmed, exc) from exc

    def _send(self, channel: amqp.Channel, envelope: dict[str, Any]) -> None:
        message = amqp.Message(
            json.dumps(envelope).encode(),
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,  # persistent: survives a broker restart in a durable queue
            message_id=envelope["id"],
            priority=0,  # these two as kombu's Producer sent them: consumers see the same properties
            application_headers={},
        )
        # basic.publish without basic_publish's extra read for a connection.blocked notice per message:
        # _await_confirms reads everything the broker says, and a blocked broker runs into its timeout.
        channel.send_method(spec.Basic.Publish, "Bssbb", (0, self.exchange, envelope["type"], False, False), message)
        self._confirms.published += 1

    def _await_confirms(self) -> None:
        """Read the broker's answers until all that was published is acked, or up to the first nack."""
        confirms, connection = self._confirms, self._channel.connection
        deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
        while not confirms.settled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the broker confirmed no more within {CONFIRM_TIMEOUT_SECONDS}s")
            connection.drain_events(timeout=remaining)
        if confirms.acked_through < confirms.published:
            raise MessageNacked(f"the broker refused delivery tag {confirms.first_nacked}")

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._confirms = _Confirms()  # the next channel numbers its messages from 1 again
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


# Core, not ORM objects: the relay touches every row once, and the ORM's bookkeeping cost more than the SQL.
_OUTBOX = OutboxEvent.__table__


class Relay:
    def __init__(self, db: Database, publisher: Publisher, batch_size: int = 200, *,
                 min_backoff: float = 0.1, max_backoff: float = 5.0):
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    def _claim(self) -> sa.Select:
        query = (sa.select(_OUTBOX.c.seq, _OUTBOX.c.envelope).where(_OUTBOX.c.sent_at.is_(None))
                 .order_by(_OUTBOX.c.seq).limit(self.batch_size))
        if self.db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return query

    def run_once(self) -> int:
        """Publish one batch; return how many rows were sent. Raises PublishFailed after marking the
        confirmed part of the batch sent."""
        failure: PublishFailed | None = None
        with self.db.transaction() as session:
            rows = session.execute(self._claim()).all()
            if not rows:
                return 0
            try:
                self.publisher.publish([row.envelope for row in rows])
                sent = len(rows)
            except PublishFailed as exc:
                failure, sent = exc, exc.confirmed
                session.execute(sa.update(_OUTBOX).where(_OUTBOX.c.seq == rows[sent].seq)
                                .values(attempts=_OUTBOX.c.attempts + 1))
            if sent:
                session.execute(sa.update(_OUTBOX).where(_OUTBOX.c.seq.in_([row.seq for row in rows[:sent]]))
                                .values(sent_at=utcnow()))
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
