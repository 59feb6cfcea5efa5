"""A replica's rolling statistics per endpoint and deployment, its Prometheus metrics, and its own usage."""

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.serving.window import ServingStats, process_usage


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def stats_with(clock, horizon=600):
    registry = CollectorRegistry()
    return ServingStats(registry, clock=clock, horizon_seconds=horizon), registry


def test_the_window_counts_requests_errors_and_rows_per_deployment():
    clock = Clock()
    stats, _ = stats_with(clock)
    for _ in range(90):
        stats.record("churn-production", "d1", 1, 0.004, False)
    for _ in range(10):
        stats.record("churn-production", "d1", 1, 0.004, True, rows=3)
    stats.record("churn-production", "d2", 2, 0.010, False, rows=1000)
    stats.record("fraud-staging", "d7", 7, 0.010, False)
    window = stats.window("churn-production")
    assert set(window) == {"d1", "d2"}
    assert window["d1"]["version"] == 1 and window["d2"]["version"] == 2
    assert window["d1"]["requests"] == 100 and window["d1"]["errors"] == 10 and window["d1"]["rows"] == 120
    assert window["d1"]["error_rate"] == pytest.approx(10.0)
    assert window["d2"]["rows"] == 1000 and window["d2"]["error_rate"] == 0.0


def test_two_deployments_of_one_version_number_are_counted_apart_and_together_in_prometheus():
    # An A/B test between two models may put version 3 of each on one endpoint.
    stats, registry = stats_with(Clock())
    stats.record("churn-production", "a", 3, 0.004, True)
    for _ in range(4):
        stats.record("churn-production", "b", 3, 0.004, False)
    window = stats.window("churn-production")
    assert {key: (numbers["version"], numbers["requests"], numbers["errors"]) for key, numbers in window.items()} == \
        {"a": (3, 1, 1), "b": (3, 4, 0)}
    text = generate_latest(registry).decode()
    assert 'modelyard_prediction_requests_total{endpoint="churn-production",outcome="success",version="3"} 4.0' in text
    assert 'modelyard_prediction_requests_total{endpoint="churn-production",outcome="error",version="3"} 1.0' in text


def test_latency_percentiles_are_within_a_bucket_of_the_truth():
    stats, _ = stats_with(Clock())
    for millis in range(1, 1001):  # 1..1000 ms: p50 500, p95 950, p99 990
        stats.record("e", "d1", 1, millis / 1000, False)
    latency = stats.window("e")["d1"]["latency_ms"]
    for name, truth in (("p50", 500), ("p95", 950), ("p99", 990)):
        assert latency[name] == pytest.approx(truth, rel=0.2)
    assert latency["p50"] <= latency["p95"] <= latency["p99"]


def test_requests_older_than_the_window_are_left_out_and_slots_are_reused():
    clock = Clock()
    stats, _ = stats_with(clock, horizon=120)
    stats.record("e", "d1", 1, 0.5, True)
    clock.now += 30
    stats.record("e", "d1", 1, 0.001, False)
    assert stats.window("e", seconds=10)["d1"]["requests"] == 1
    assert stats.window("e", seconds=60)["d1"]["requests"] == 2
    clock.now += 120  # a full ring later the same slots hold new seconds
    stats.record("e", "d1", 1, 0.001, False)
    assert stats.window("e", seconds=600)["d1"] == {
        "version": 1, "requests": 1, "errors": 0, "error_rate": 0.0, "rows": 1,
        "latency_ms": stats.window("e", seconds=1)["d1"]["latency_ms"]}
    clock.now += 200
    assert stats.window("e") == {}


def test_recording_from_many_threads_loses_nothing():
    stats, _ = stats_with(Clock())

    def serve():
        for _ in range(2000):
            stats.record("e", "d3", 3, 0.002, False)

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.window("e")["d3"]["requests"] == 16000


def test_prometheus_exposes_requests_by_outcome_rows_and_latency():
    stats, registry = stats_with(Clock())
    stats.record("e", "d1", 1, 0.003, False, rows=5)
    stats.record("e", "d1", 1, 0.2, True)
    text = generate_latest(registry).decode()
    assert 'modelyard_prediction_requests_total{endpoint="e",outcome="success",version="1"} 1.0' in text
    assert 'modelyard_prediction_requests_total{endpoint="e",outcome="error",version="1"} 1.0' in text
    assert 'modelyard_predicted_rows_total{endpoint="e",version="1"} 6.0' in text
    assert 'modelyard_prediction_latency_seconds_bucket{endpoint="e",le="0.005",version="1"} 1.0' in text
    assert 'modelyard_prediction_latency_seconds_count{endpoint="e",version="1"} 2.0' in text


def test_process_usage_reports_cpu_since_the_last_call_and_resident_memory():
    process_usage()
    sum(i * i for i in range(300_000))  # some CPU between the calls
    usage = process_usage()
    assert usage["cpu_percent"] > 0
    assert usage["rss_bytes"] > 10 * 1024 * 1024
