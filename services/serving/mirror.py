"""Shadow predictions off the request path: a bounded queue and one thread per serving process.

A shadow A/B test's B answers a copy of every request A answers (services/serving/predictions.py). The
client waits for A alone: B's prediction is queued here and made by this process's mirror thread. When B
is slower than the traffic, the queue fills and further copies are dropped and counted (a Prometheus
counter and a warning at most once a minute), never waited for: a shadow must not cost A's users
anything. B's arm in the test then has fewer units than A's; as its units are a subset of A's chosen by
timing, not by the unit, the comparison holds.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

CAPACITY = 1_000
DROP_WARNING_SECONDS = 60.0


class Mirror:
    """Runs queued shadow predictions (callables) one at a time, on a thread started in the process that uses it."""

    def __init__(self, *, capacity: int = CAPACITY, registry: CollectorRegistry | None = None):
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._dropped = 0
        self._last_drop_warning = float("-inf")
        self._dropped_total = Counter(
            "modelyard_shadow_dropped_requests_total", "Copies of requests a shadow version did not answer: its "
            "queue was full", registry=registry if registry is not None else CollectorRegistry())

    @property
    def dropped(self) -> int:
        return self._dropped

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; drop it (counted) when the queue is full. Never blocks or raises."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                warn = time.monotonic() - self._last_drop_warning >= DROP_WARNING_SECONDS
                if warn:
                    self._last_drop_warning = time.monotonic()
            self._dropped_total.inc()
            if warn:
                log.warning("a shadow version falls behind its traffic: %d copies dropped since start", self._dropped)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after it has run what is queued (within `timeout` seconds)."""
        thread = self._thread
        if thread is None or self._thread_pid != os.getpid():
            return
        self._queue.put(None)
        thread.join(timeout)

    def _ensure_thread(self) -> None:
        # Started on first use in each process: a thread started before gunicorn forks does not survive it.
        if self._thread_pid == os.getpid():
            return
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread = threading.Thread(target=self._run, name="shadow-mirror", daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception:  # one failed copy must not stop the others; predictions.py records its failures
                log.exception("a shadow prediction failed")
