"""What a serving replica measures about itself: per (endpoint, deployment) request counts, errors, rows
and latency over the last seconds, for the control plane's rollback decisions; the same as Prometheus
metrics (by endpoint and version); and the process's CPU and memory, for scaling.

By deployment, not version: an A/B test may serve version 3 of two models on one endpoint, and the
rollout's observation must judge its own candidate's requests alone.

The rolling window is a ring of one-second slots, each with a fixed log-spaced latency histogram:
recording is a bisect and a few additions under one lock, memory is bounded by the ring whatever the
traffic, and a percentile is read from the summed histogram as Prometheus's histogram_quantile reads
one (linear within the bucket), so it is within one bucket (20%) of the true value.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

# Upper bounds (ms) of the window's latency buckets: 0.1 ms growing by 20% to past a minute, then the rest.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.1 * 1.2 ** k for k in range(74)) + (float("inf"),)
# Prometheus buckets (seconds): coarser, as dashboards and alert rules aggregate them across replicas.
PROMETHEUS_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                      5.0, 10.0, float("inf"))
# The longest window that can be asked for; a canary step's observation reads well inside it.
HORIZON_SECONDS = 600
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


class _Series:
    """One (endpoint, deployment) and its version: a ring of per-second counts, and its Prometheus children."""

    __slots__ = ("version", "second", "requests", "errors", "rows", "latency", "successes", "failures", "seconds",
                 "rows_total")

    def __init__(self, version: int, size: int, successes: Any, failures: Any, seconds: Any, rows_total: Any):
        self.version = version
        self.second = [-1] * size  # the clock second each slot holds; -1 for never used
        self.requests = [0] * size
        self.errors = [0] * size
        self.rows = [0] * size
        self.latency: list[list[int] | None] = [None] * size  # allocated with the slot's first request
        self.successes, self.failures, self.seconds, self.rows_total = successes, failures, seconds, rows_total

    def add(self, now: int, slot: int, bucket: int, error: bool, rows: int) -> None:
        if self.second[slot] != now:
            self.second[slot] = now
            self.requests[slot] = self.errors[slot] = self.rows[slot] = 0
            self.latency[slot] = [0] * len(LATENCY_BOUNDS_MS)
        self.requests[slot] += 1
        self.errors[slot] += error
        self.rows[slot] += rows
        self.latency[slot][bucket] += 1  # type: ignore[index]


def _percentile(histogram: list[int], total: int, q: float) -> float:
    """The q-quantile (ms) of a bucketed sample, linear within its bucket (Prometheus's histogram_quantile)."""
    rank, below = q * total, 0
    for index, count in enumerate(histogram):
        if count and below + count >= rank:
            upper = LATENCY_BOUNDS_MS[index]
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0.0
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return LATENCY_BOUNDS_MS[-2]


class ServingStats:
    """Per-process, thread-safe statistics of the predictions a replica served, per endpoint and deployment."""

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.monotonic,
                 horizon_seconds: int = HORIZON_SECONDS):
        self._clock, self._size = clock, horizon_seconds
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        labels = ("endpoint", "version")
        self._requests = Counter("modelyard_prediction_requests", "Predict requests served, by outcome",
                                 (*labels, "outcome"), registry=registry)
        self._rows = Counter("modelyard_predicted_rows", "Instances predicted", labels, registry=registry)
        self._latency = Histogram("modelyard_prediction_latency_seconds", "Time to answer a predict request",
                                  labels, buckets=PROMETHEUS_BUCKETS, registry=registry)

    def _get(self, endpoint: str, deployment_id: str, version: int) -> _Series:
        series = self._series.get((endpoint, deployment_id))
        if series is None:
            # Two deployments of one version number (two models' in an A/B test) add up in Prometheus's.
            names = (endpoint, str(version))
            # Children looked up once per series: prometheus_client's labels() takes a lock and builds a key.
            series = _Series(version, self._size, self._requests.labels(*names, "success"),
                             self._requests.labels(*names, "error"), self._latency.labels(*names),
                             self._rows.labels(*names))
            self._series[(endpoint, deployment_id)] = series
        return series

    def record(self, endpoint: str, deployment_id: str, version: int, seconds: float, error: bool,
               rows: int = 1) -> None:
        """Count one request to deployment `deployment_id` (of `version`) on `endpoint` that took `seconds` and
        predicted `rows` rows."""
        now = int(self._clock())
        bucket = bisect_left(LATENCY_BOUNDS_MS, seconds * 1000.0)
        with self._lock:
            series = self._get(endpoint, deployment_id, version)
            series.add(now, now % self._size, bucket, error, rows)
        (series.failures if error else series.successes).inc()
        series.seconds.observe(seconds)
        series.rows_total.inc(rows)

    def window(self, endpoint: str, seconds: float = 60) -> dict[str, dict]:
        """Per deployment id on `endpoint` with requests in the last `seconds` (at most the horizon): its
        version, requests, errors, error_rate (percent), rows and latency_ms {p50, p95, p99}."""
        now = int(self._clock())
        span = max(1, min(int(seconds), self._size))
        answer: dict[str, dict] = {}
        with self._lock:
            for (name, deployment_id), series in self._series.items():
                if name != endpoint:
                    continue
                requests = errors = rows = 0
                histogram = [0] * len(LATENCY_BOUNDS_MS)
                for slot, second in enumerate(series.second):
                    if now - span < second <= now:
                        requests += series.requests[slot]
                        errors += series.errors[slot]
                        rows += series.rows[slot]
                        histogram = [a + b for a, b in zip(histogram, series.latency[slot])]  # type: ignore[arg-type]
                if requests:
                    answer[deployment_id] = {
                        "version": series.version, "requests": requests, "errors": errors,
                        "error_rate": 100.0 * errors / requests, "rows": rows,
                        "latency_ms": {label: round(_percentile(histogram, requests, q), 3) for label, q in PERCENTILES}}
        return answer


_usage_lock = threading.Lock()
# CPU is measured between two calls; the first call measures since this module was imported.
_previous = (time.monotonic(), time.process_time())


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # no /proc (macOS): the peak, which is what getrusage knows, in KiB on Linux, bytes on macOS
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def process_usage() -> dict[str, Any]:
    """This process's CPU use since the previous call, as a percent of one core (over 100 when threads
    run on several), and its resident memory now."""
    global _previous
    with _usage_lock:
        wall, cpu = time.monotonic(), time.process_time()
        then_wall, then_cpu = _previous
        _previous = (wall, cpu)
    elapsed = wall - then_wall
    return {"cpu_percent": 100.0 * (cpu - then_cpu) / elapsed if elapsed > 0 else 0.0, "rss_bytes": _rss_bytes()}
