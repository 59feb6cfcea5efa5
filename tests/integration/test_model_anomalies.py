"""GET /api/v1/models/<id>/anomalies: a model's operating metrics per hour, judged by the robust detector."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.support.deployments import model_with_versions

pytestmark = pytest.mark.integration

PREDICTIONS = "/api/v1/monitoring/predictions"
HOURS = 72
PER_HOUR = 6


def _hours_of_records(model_id: str, rng: np.random.Generator, *, spike_hours_ago: int) -> list[dict]:
    """Six predictions in each of the last 72 whole hours: steady latency, except one hour's."""
    this_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    records = []
    for back in range(1, HOURS + 1):
        start = this_hour - timedelta(hours=back)
        for n in range(PER_HOUR):
            latency = 400.0 if back == spike_hours_ago else float(rng.uniform(18, 22))
            records.append({"model_id": model_id, "request_id": f"h{back}-{n}", "prediction": n % 2,
                            "latency_ms": latency, "features": {"age": 30 + n, "plan": "pro"},
                            "timestamp": (start + timedelta(minutes=5 * n)).isoformat()})
    return records


def test_a_slow_hour_is_an_anomaly_of_latency_and_nothing_else_is(client, ds):
    model = model_with_versions(client, ds)
    sent = _hours_of_records(model["id"], np.random.default_rng(2), spike_hours_ago=5)
    assert client.post(PREDICTIONS, json={"records": sent}, headers=ds).json["stored"] == len(sent)

    answer = client.get(f"/api/v1/models/{model['name']}/anomalies?days=3", headers=ds)
    assert answer.status_code == 200, answer.json
    report = answer.json
    this_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    spike = (this_hour - timedelta(hours=5)).isoformat()
    latency = report["metrics"]["latency_p95_ms"]
    assert [point["start"] for point in latency["points"]] == [spike]
    assert latency["points"][0]["direction"] == "high" and latency["points"][0]["value"] == pytest.approx(400.0, rel=0.01)
    assert latency["spans"] == [{"start": spike, "end": spike, "buckets": 1, "peak": spike,
                                 "peak_score": latency["points"][0]["score"], "direction": "high"}]
    # Every whole hour of the three days is a bucket; the hour in progress is not judged.
    assert len(latency["series"]) == HOURS and report["until"] == this_hour.isoformat()
    for name in ("error_rate", "throughput", "mean_prediction", "missing_rate"):
        assert report["metrics"][name]["points"] == [], name
    throughput = report["metrics"]["throughput"]["series"]
    assert {bucket["value"] for bucket in throughput} == {PER_HOUR / 3600}
    # The first hours have too little history for a verdict.
    assert latency["series"][0]["score"] is None and latency["series"][0]["baseline"] is None
    assert math.isclose(report["metrics"]["mean_prediction"]["series"][-1]["value"], 0.5)


def test_bad_arguments_are_422_and_an_unknown_model_404(client, ds):
    model = model_with_versions(client, ds)
    url = f"/api/v1/models/{model['id']}/anomalies"
    assert client.get(url, headers=ds).json["metrics"]["throughput"]["points"] == []  # no predictions: no verdict
    for query in ("days=0", "days=93", "granularity=minute", "threshold=0", "threshold=abc", "colour=red"):
        assert client.get(f"{url}?{query}", headers=ds).status_code == 422, query
    assert client.get("/api/v1/models/nobody/anomalies", headers=ds).status_code == 404
