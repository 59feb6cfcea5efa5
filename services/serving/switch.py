"""Replicas hear of a traffic change at once, instead of at their next poll.

The control plane emits `endpoint.traffic_changed` for every switch; a rollback takes effect the
moment it is written, and a replica must not keep sending users to the version being rolled back
until its next poll. Each replica process listens, and re-reads the endpoint's desired state when it
hears of a change. Polling stays: a missed message only delays a switch.

With RabbitMQ (`make stack`, compose, Kubernetes) each serving process binds a queue of its own
(exclusive, gone with the process) to the events exchange, since a shared consumer queue would tell
only one of them. `make run` has no broker: its serving process polls the desired state often instead
(launch/run.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from typing import Any, Callable

from kombu import Connection, Consumer, Queue

from shared.events.catalogue import parse_envelope
from shared.events.topology import events_exchange

log = logging.getLogger(__name__)

ROUTING_KEY = "endpoint.traffic_changed"
# Weak: a replica that is gone (an app built and dropped, in tests) stops being told.
_listeners: list[weakref.WeakMethod] = []
_listening: set[tuple[int, str, str]] = set()
_lock = threading.Lock()


def on_change(listener: Callable[[str], None]) -> None:
    """Call `listener(endpoint)` (a bound method) whenever this process hears that an endpoint's traffic changed."""
    with _lock:
        _listeners[:] = [ref for ref in _listeners if ref() is not None]
        _listeners.append(weakref.WeakMethod(listener))


def forget(listener: Callable[[str], None]) -> None:
    with _lock:
        _listeners[:] = [ref for ref in _listeners if ref() is not None and ref() != listener]


def notify(endpoint: str) -> None:
    for ref in list(_listeners):
        listener = ref()
        if listener is None:
            continue
        try:
            listener(endpoint)
        except Exception:  # one replica's failed refresh must not keep the others from theirs
            log.exception("refreshing endpoint %s after a traffic change failed", endpoint)


def start_listening(events_url: str, exchange: str) -> None:
    """Listen on the broker for this process, once (a thread, started after gunicorn forked)."""
    key = (os.getpid(), events_url, exchange)
    with _lock:
        if key in _listening:
            return
        _listening.add(key)
    threading.Thread(target=listen, args=(events_url, exchange), name="serving-switch", daemon=True).start()


def listen(events_url: str, exchange: str) -> None:
    """Forever: notify this process's listeners of every traffic change on the broker."""
    queue = Queue(f"serving.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}",
                  exchange=events_exchange(exchange), routing_key=ROUTING_KEY, exclusive=True, auto_delete=True)

    def received(_decoded: Any, message: Any) -> None:
        try:
            notify(parse_envelope(message.body)["payload"]["endpoint"])
        except Exception:  # a message we cannot read tells us nothing; polling covers it
            log.exception("could not read a traffic change")
        message.ack()

    while True:
        try:
            with Connection(events_url, connect_timeout=5) as connection:
                with Consumer(connection, queues=[queue], callbacks=[received], accept=["json"]):
                    while True:
                        try:
                            connection.drain_events(timeout=1)
                        except socket.timeout:
                            connection.heartbeat_check()
        except Exception:  # the broker went away: the poll keeps replicas right meanwhile
            log.warning("listening for traffic changes failed; retrying", exc_info=True)
            time.sleep(2)
