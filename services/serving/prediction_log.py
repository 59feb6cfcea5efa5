"""Prediction logging off the request path: a bounded buffer per process, sent in batches to monitoring.

A prediction adds its records and returns: `add` takes a lock for a few microseconds and never waits
on the broker. A daemon thread sends what is buffered as ONE `ingest.store_predictions` task whenever
a batch's worth (500) is waiting, or every 100 ms. If the broker is down the thread keeps the batch and
retries it with backoff; the buffer fills meanwhile, and what does not fit is dropped and counted
(the `dropped` property, a Prometheus counter and a warning at most once a minute), never silently.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from celery import Celery
from kombu.exceptions import EncodeError
from kombu.serialization import dumps
from prometheus_client import CollectorRegistry, Counter

from shared.prediction_records import STORE_PREDICTIONS
from shared.tasks import PLAIN_JSON

log = logging.getLogger(__name__)

CAPACITY = 10_000
BATCH_SIZE = 500
FLUSH_SECONDS = 0.1
# A batch is sent up to this many times, waiting 0.1, 0.2, 0.4 ... 5 s between (about 40 s in all);
# then it is dropped and counted, so that a long broker outage costs memory no more than the buffer.
SEND_ATTEMPTS = 12
MAX_BACKOFF_SECONDS = 5.0
DROP_WARNING_SECONDS = 60.0


class PredictionLog:
    """Buffers prediction records (shared.prediction_records) and sends them in batches to `queue`."""

    def __init__(self, sender: Celery, queue: str, *, capacity: int = CAPACITY, batch_size: int = BATCH_SIZE,
                 flush_seconds: float = FLUSH_SECONDS, send_attempts: int = SEND_ATTEMPTS,
                 registry: CollectorRegistry | None = None):
        # `sender`: shared.tasks.task_sender(settings); `queue`: settings.task_queue(shared.prediction_records.QUEUE).
        # `registry`: where the counters are exported (the app's /metrics); a private one by default.
        self._sender = sender
        self._queue = queue
        self._capacity = capacity
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._send_attempts = send_attempts
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._dropped = 0
        self._failed_sends = 0
        self._sent = 0
        self._last_drop_warning = float("-inf")
        registry = registry if registry is not None else CollectorRegistry()
        self._dropped_total = Counter(
            "modelyard_prediction_log_dropped_records_total", "Prediction records dropped: buffer full, or the broker "
            "refused their batch every time", ["reason"], registry=registry)
        self._failed_sends_total = Counter(
            "modelyard_prediction_log_failed_sends_total", "Attempts to send a batch of prediction records that failed",
            registry=registry)
        self._sent_total = Counter(
            "modelyard_prediction_log_sent_records_total", "Prediction records handed to the broker", registry=registry)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records dropped so far (buffer full, or their batch could not be sent)."""
        return self._dropped

    @property
    def failed_sends(self) -> int:
        """Attempts to send a batch that failed (each is retried until SEND_ATTEMPTS)."""
        return self._failed_sends

    @property
    def sent(self) -> int:
        """Records handed to the broker so far."""
        return self._sent

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, records: list[dict[str, Any]]) -> None:
        """Buffer `records` for sending; those that do not fit are dropped and counted. Never blocks or raises."""
        try:
            with self._lock:
                room = self._capacity - len(self._buffer)
                if len(records) <= room:
                    self._buffer.extend(records)
                    dropped = 0
                else:
                    self._buffer.extend(records[:max(room, 0)])
                    dropped = len(records) - max(room, 0)
                full_batch = len(self._buffer) >= self._batch_size
            if full_batch:
                self._wake.set()
            if dropped:
                self._drop(dropped, "buffer_full")
        except Exception:  # a prediction must never fail for its log
            log.exception("prediction records could not be buffered")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after it has sent what is buffered (within `timeout` seconds)."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("closing the prediction log: %d records were still unsent after %.0f s",
                        len(self._buffer), timeout)

    def _drop(self, count: int, reason: str) -> None:
        with self._lock:
            self._dropped += count
            now = time.monotonic()
            warn = now - self._last_drop_warning >= DROP_WARNING_SECONDS
            if warn:
                self._last_drop_warning = now
        self._dropped_total.labels(reason).inc(count)
        if warn:
            log.warning("dropped %d prediction records (%s); %d dropped since start", count, reason, self._dropped)

    def _run(self) -> None:
        while True:
            closing = self._closing.is_set()
            batch = self._take()
            if batch:
                self._send(batch)
            elif closing:
                return
            if len(self._buffer) < self._batch_size and not closing:
                self._wake.wait(self._flush_seconds)
                self._wake.clear()

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            count = min(self._batch_size, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def _send(self, batch: list[dict[str, Any]]) -> None:
        delay = self._flush_seconds
        for attempt in range(1, self._send_attempts + 1):
            try:
                self._sender.send_task(STORE_PREDICTIONS, args=[batch], queue=self._queue, serializer=PLAIN_JSON)
                self._sent += len(batch)
                self._sent_total.inc(len(batch))
                return
            except EncodeError:
                # A record JSON cannot carry (a numpy value, say) would fail every attempt: it alone goes.
                batch = self._encodable(batch)
                if not batch:
                    return
                continue
            except Exception as exc:  # the broker is down or refused: keep the batch and try again
                self._failed_sends += 1
                self._failed_sends_total.inc()
                log.warning("sending %d prediction records failed (attempt %d of %d): %s",
                            len(batch), attempt, self._send_attempts, exc)
            if attempt < self._send_attempts:
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        self._drop(len(batch), "send_failed")

    def _encodable(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for record in batch:
            try:
                dumps(record, serializer=PLAIN_JSON)
                kept.append(record)
            except EncodeError:
                pass
        if len(kept) < len(batch):
            self._drop(len(batch) - len(kept), "not_json")
        return kept
