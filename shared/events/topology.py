"""The one place that declares RabbitMQ exchanges, queues and bindings.

Events go to a durable topic exchange (routing key = event type). Each consumer owns a durable queue
"<exchange>.<consumer>" bound to its routing keys. A failed message is retried through
"<exchange>.<consumer>.retry", a queue nobody consumes whose expired messages fall back into the
consumer's queue (RabbitMQ's dead-lettering is the delay timer). A message that keeps failing, or
cannot be read at all, is rejected and dead-lettered through "<exchange>.dlx" into
"<exchange>.<consumer>.dead", where an operator can inspect it.

Celery's work queues are declared here too, so every queue the platform uses has one home.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from kombu import Exchange, Queue, binding


class Subscriber(Protocol):
    name: str
    routing_keys: tuple[str, ...]


def events_exchange(name: str) -> Exchange:
    return Exchange(name, type="topic", durable=True)


def dead_letter_exchange(name: str) -> Exchange:
    # Direct, keyed by consumer name: a dead message reaches only the dead queue of the consumer that gave up.
    return Exchange(f"{name}.dlx", type="direct", durable=True)


def consumer_queue(exchange_name: str, subscriber: Subscriber) -> Queue:
    """The consumer's queue, bound to each of its routing keys, dead-lettering to its .dead queue."""
    exchange = events_exchange(exchange_name)
    return Queue(
        f"{exchange_name}.{subscriber.name}",
        bindings=[binding(exchange, routing_key=key) for key in subscriber.routing_keys],
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": dead_letter_exchange(exchange_name).name,
            "x-dead-letter-routing-key": subscriber.name,
        },
    )


def retry_queue(exchange_name: str, subscriber: Subscriber) -> Queue:
    """Where a failed message waits (its per-message expiration) before going back to the consumer's queue."""
    return Queue(
        f"{exchange_name}.{subscriber.name}.retry",
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": "",  # the default exchange routes by queue name
            "x-dead-letter-routing-key": f"{exchange_name}.{subscriber.name}",
        },
    )


def dead_letter_queue(exchange_name: str, subscriber: Subscriber) -> Queue:
    return Queue(
        f"{exchange_name}.{subscriber.name}.dead",
        exchange=dead_letter_exchange(exchange_name),
        routing_key=subscriber.name,
        durable=True,
    )


def subscriber_queues(exchange_name: str, subscriber: Subscriber) -> list[Queue]:
    return [
        consumer_queue(exchange_name, subscriber),
        retry_queue(exchange_name, subscriber),
        dead_letter_queue(exchange_name, subscriber),
    ]


def declare(channel, exchange_name: str, subscribers: Iterable[Subscriber] = ()) -> None:
    """Declare the exchanges and every subscriber's queues (idempotent; safe on each reconnect)."""
    events_exchange(exchange_name).declare(channel=channel)
    dead_letter_exchange(exchange_name).declare(channel=channel)
    for subscriber in subscribers:
        for queue in subscriber_queues(exchange_name, subscriber):
            queue.bind(channel).declare()


def delete(channel, exchange_name: str, subscribers: Iterable[Subscriber] = ()) -> None:
    """Remove what `declare` made: for throwaway test exchanges, never for a live one."""
    for subscriber in subscribers:
        for queue in subscriber_queues(exchange_name, subscriber):
            queue.bind(channel).delete()
    dead_letter_exchange(exchange_name).bind(channel).delete()
    events_exchange(exchange_name).bind(channel).delete()


def work_queues(pools: Iterable[str], prefix: str = "") -> list[Queue]:
    """Celery's queues, one per worker pool (names prefixed in test runs); tasks are routed to them by name.
    The pools are those the services' manifests declare (launch.catalog.queues)."""
    return [Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)
            for name in (prefix + pool for pool in pools)]


def routing_key_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ topic matching ("*" one word, "#" zero or more), for local in-process dispatch."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])
