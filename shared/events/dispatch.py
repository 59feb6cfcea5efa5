"""Local dispatch: the embedded default's stand-in for RabbitMQ, delivering to in-process consumers.

Each envelope goes through the same idempotent `process` path as a message from a queue. With no
broker there is no dead-letter queue: a handler that still fails after the bounded retries is logged
with the whole envelope and given up on, so one poison event cannot stall the outbox.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from shared.db import Database
from shared.events.consumer import EventConsumer, process
from shared.events.topology import routing_key_matches

log = logging.getLogger(__name__)


class LocalDispatch:
    """Calls every subscribed consumer whose routing keys match the event type."""

    def __init__(self, db: Database, consumers: Iterable[EventConsumer] = (), *, max_retries: int = 3):
        self.db = db
        self.consumers = list(consumers)
        self.max_retries = max_retries

    def subscribe(self, consumer: EventConsumer) -> None:
        self.consumers.append(consumer)

    def __call__(self, envelope: dict[str, Any]) -> None:
        for consumer in self.consumers:
            if any(routing_key_matches(key, envelope["type"]) for key in consumer.routing_keys):
                self._deliver(consumer, envelope)

    def _deliver(self, consumer: EventConsumer, envelope: dict[str, Any]) -> None:
        for attempt in range(self.max_retries + 1):
            try:
                process(self.db, consumer, envelope)
                return
            except Exception:
                log.exception("consumer %s failed on event %s (attempt %d of %d)",
                              consumer.name, envelope["id"], attempt + 1, self.max_retries + 1)
        log.error("consumer %s gave up on event %s after %d attempts; dead-lettered: %r",
                  consumer.name, envelope["id"], self.max_retries + 1, envelope)
