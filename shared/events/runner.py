"""Runs an EventConsumer on its RabbitMQ queue: handle, retry with backoff, dead-letter.

A message is acknowledged only after its transaction committed (or it was already processed). When
the handler raises, a copy goes to the consumer's retry queue with its `x-retries` header counted up
and a growing expiration, after which RabbitMQ puts it back on the consumer's queue; the original is
then acknowledged. Once `max_retries` retries have failed, or when the body is not a readable event
at all, the message is rejected without requeue and RabbitMQ dead-letters it to the `.dead` queue.

Run consumers with `python -m shared.events.runner package.module:factory [...]`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Sequence

from kombu import Connection, Consumer, Producer
from kombu.message import Message

from shared.config import load_settings
from shared.db import Database
from shared.events import topology
from shared.events.catalogue import MalformedEvent, parse_envelope
from shared.events.consumer import EventConsumer, load_consumer, process

log = logging.getLogger(__name__)

RETRIES_HEADER = "x-retries"
CONFIRM_TIMEOUT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 5
HEARTBEAT_SECONDS = 30


class ConsumerRunner:
    def __init__(self, db: Database, consumer: EventConsumer, url: str, exchange: str, *,
                 max_retries: int = 3, retry_delay: float = 1.0, max_retry_delay: float = 60.0,
                 prefetch: int = 10):
        self.db = db
        self.consumer = consumer
        self.url = url
        self.exchange = exchange
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.prefetch = prefetch
        self._retry_producer: Producer | None = None
        self._failures = 0

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Consume until `stop` is set, reconnecting with bounded backoff when the broker goes away."""
        self._failures = 0
        while not stop.is_set():
            try:
                self._consume(stop, poll_seconds)
            except Exception as exc:
                delay = min(5.0, 0.1 * 2 ** self._failures)
                self._failures += 1
                log.warning("consumer %s lost the broker (%s); reconnecting in %.1fs", self.consumer.name, exc, delay)
                stop.wait(delay)

    def _consume(self, stop: threading.Event, poll_seconds: float) -> None:
        # Heartbeats notice a broker that vanished without closing the socket.
        with Connection(self.url, transport_options={"confirm_publish": True}, heartbeat=HEARTBEAT_SECONDS,
                        connect_timeout=CONNECT_TIMEOUT_SECONDS) as connection:
            # One attempt: the caller owns retries and backoff (kombu would otherwise sleep 2 s here).
            connection.ensure_connection(max_retries=0)
            channel = connection.default_channel
            topology.declare(channel, self.exchange, [self.consumer])
            # Retries publish on their own channel so a confirm wait never interleaves with deliveries.
            self._retry_producer = Producer(connection.channel())
            queue = topology.consumer_queue(self.exchange, self.consumer)
            with Consumer(channel, queues=[queue], on_message=self._on_message, prefetch_count=self.prefetch):
                self._failures = 0
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=poll_seconds)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _on_message(self, message: Message) -> None:
        try:
            envelope = parse_envelope(message.body)
        except MalformedEvent as exc:
            log.error("consumer %s dead-letters an unreadable message (id %s): %s",
                      self.consumer.name, message.properties.get("message_id"), exc)
            message.reject(requeue=False)
            return
        try:
            process(self.db, self.consumer, envelope)
        except Exception:
            self._retry_or_dead_letter(message, envelope)
            return
        message.ack()

    def _retry_or_dead_letter(self, message: Message, envelope: dict) -> None:
        retries = int((message.headers or {}).get(RETRIES_HEADER, 0))
        if retries >= self.max_retries:
            log.exception("consumer %s dead-letters event %s (%s) after %d retries",
                          self.consumer.name, envelope["id"], envelope["type"], retries)
            message.reject(requeue=False)
            return
        delay = min(self.max_retry_delay, self.retry_delay * 2 ** retries)
        log.exception("consumer %s failed on event %s (%s); retry %d of %d in %.1fs",
                      self.consumer.name, envelope["id"], envelope["type"], retries + 1, self.max_retries, delay)
        # RabbitMQ's own x-death headers describe the previous hop; only our counter travels on.
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
        headers[RETRIES_HEADER] = retries + 1
        self._retry_producer.publish(
            message.body,
            exchange="",
            routing_key=topology.retry_queue(self.exchange, self.consumer).name,
            headers=headers,
            expiration=delay,
            message_id=message.properties.get("message_id"),
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            retry=False,
            confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
        )
        # Acknowledged only once the retry copy is confirmed: a crash in between means a duplicate, not a loss.
        message.ack()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named consumers (one thread each) from `MODELYARD_*` settings until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m shared.events.runner", description=__doc__.splitlines()[0])
    parser.add_argument("consumers", nargs="+", metavar="MODULE:FACTORY")
    args = parser.parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.events_url == "local":
        log.error("MODELYARD_EVENTS_URL is 'local': consumers run inside the relay (--consumer), not here")
        return 2
    db = Database(settings.database_url)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threads = []
    for path in args.consumers:
        runner = ConsumerRunner(db, load_consumer(path), settings.events_url, settings.events_exchange,
                                max_retries=settings.consumer_max_retries)
        threads.append(threading.Thread(target=runner.run, args=(stop,), name=path))
    for thread in threads:
        thread.start()
    log.info("consuming from %s: %s", settings.events_exchange, ", ".join(args.consumers))
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
