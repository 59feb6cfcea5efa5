"""GET /api/v1/models/<id>/performance: predictions scored against their actuals as scikit-learn scores
them, by the time each prediction was made, so that late actuals change their original buckets."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sklearn import metrics

from tests.support.deployments import model_with_versions

pytestmark = pytest.mark.integration

PREDICTIONS, ACTUALS, METRICS = ("/api/v1/monitoring/predictions", "/api/v1/monitoring/actuals",
                                 "/api/v1/monitoring/metrics")


def _day(days_ago: int, hour: int = 12) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago) + timedelta(hours=hour)


def _send(client, headers, path, records):
    response = client.post(path, json={"records": records}, headers=headers)
    assert response.status_code == 202 and not response.json["rejected"], response.json
    return response.json


def test_classification_is_scored_per_day_and_a_late_actual_changes_its_predictions_day(client, ds):
    model = model_with_versions(client, ds, count=2)
    two_days_ago = [  # (version, prediction, P(1), actual, latency)
        (1, 1, 0.9, 1, 10.0), (1, 0, 0.2, 0, 12.0), (1, 1, 0.6, 0, 30.0), (2, 1, 0.7, None, 8.0),
        (2, 0, 0.4, 1, 9.0),
    ]
    records = [{"model_id": model["id"], "version": version, "request_id": f"old-{i}", "prediction": predicted,
                "probabilities": {"0": 1 - p, "1": p}, "latency_ms": latency, "timestamp": _day(2).isoformat(),
                **({"actual": actual} if actual is not None else {})}
               for i, (version, predicted, p, actual, latency) in enumerate(two_days_ago)]
    records.append({"model_id": model["id"], "version": 2, "request_id": "failed", "error": "timed out",
                    "timestamp": _day(2).isoformat()})
    records.append({"model_id": model["id"], "version": 2, "request_id": "today", "prediction": {"prediction": 1,
                    "confidence": 0.8}, "actual": {"actual": 1}, "timestamp": _day(0, hour=0).isoformat()})
    _send(client, ds, PREDICTIONS, records)
    _send(client, ds, METRICS, [{"model_id": model["id"], "metrics": {"conversion": 0.2}, "timestamp": _day(2).isoformat()},
                                {"model_id": model["id"], "metrics": {"conversion": 0.4}, "timestamp": _day(2).isoformat()}])

    def performance(**query):
        response = client.get(f"/api/v1/models/{model['id']}/performance", query_string=query, headers=ds)
        assert response.status_code == 200, response.json
        return response.json

    answer = performance(days=7)
    old, today = answer["series"]
    assert old["start"] == _day(2, hour=0).isoformat() and today["start"] == _day(0, hour=0).isoformat()
    scored = [(predicted, actual, p) for _, predicted, p, actual, _ in two_days_ago if actual is not None]
    y_pred, y_true, y_score = ([row[i] for row in scored] for i in range(3))
    assert old["with_actuals"] == 4 and (old["predictions"], old["errors"]) == (6, 1)
    assert old["error_rate"] == pytest.approx(1 / 6)
    assert old["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert old["precision"] == pytest.approx(metrics.precision_score(y_true, y_pred))
    assert old["recall"] == pytest.approx(metrics.recall_score(y_true, y_pred))
    assert old["f1"] == pytest.approx(metrics.f1_score(y_true, y_pred))
    assert old["roc_auc"] == pytest.approx(metrics.roc_auc_score(y_true, y_score))
    latencies = [row[4] for row in two_days_ago]
    assert old["latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95), rel=0.01)  # tally.py: within 1%
    assert old["throughput"] == pytest.approx(6 / 86400)
    assert old["metrics"] == {"conversion": pytest.approx(0.3)}
    assert (today["predictions"], today["accuracy"], today["metrics"]) == (1, 1.0, {})
    assert answer["summary"]["predictions"] == 7 and answer["summary"]["with_actuals"] == 5
    assert set(answer["by_version"]) == {"1", "2"} and answer["by_version"]["1"]["accuracy"] == pytest.approx(2 / 3)

    # The actual of old-3 arrives today: two days ago's scores change, today's do not.
    _send(client, ds, ACTUALS, [{"model_id": model["id"], "request_id": "old-3", "actual": 1}])
    again = performance(days=7)
    assert again["series"][0]["with_actuals"] == 5
    assert again["series"][0]["accuracy"] == pytest.approx(metrics.accuracy_score(y_true + [1], y_pred + [1]))
    assert again["series"][1] == today
    only_one = performance(days=7, version=1, granularity="hour")
    assert only_one["summary"]["predictions"] == 3 and [b["start"] for b in only_one["series"]] == [
        _day(2).isoformat()]
    assert performance(days=1)["summary"]["predictions"] == 1  # the window leaves two days ago out


def test_regression_is_scored_with_rmse_mae_and_r2(client, ds):
    model = model_with_versions(client, ds, type="regression")
    pairs = [(2.5, 3.0), (0.0, -0.5), (2.0, 2.0), (8.0, 7.0)]
    _send(client, ds, PREDICTIONS, [{"model_id": model["id"], "request_id": f"r-{i}", "prediction": predicted,
                                     "actual": actual} for i, (predicted, actual) in enumerate(pairs)])
    summary = client.get(f"/api/v1/models/{model['id']}/performance", headers=ds).json["summary"]
    y_pred, y_true = zip(*pairs)
    assert summary["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(y_true, y_pred)))
    assert summary["mae"] == pytest.approx(metrics.mean_absolute_error(y_true, y_pred))
    assert summary["r2"] == pytest.approx(metrics.r2_score(y_true, y_pred))
    assert "accuracy" not in summary


@pytest.mark.parametrize("query, status", [({"days": 0}, 422), ({"days": 400}, 422), ({"granularity": "week"}, 422),
                                           ({"version": 0}, 422), ({"colour": "red"}, 422)])
def test_bad_queries_are_422(client, ds, query, status):
    model = model_with_versions(client, ds)
    assert client.get(f"/api/v1/models/{model['id']}/performance", query_string=query, headers=ds).status_code == status


def test_an_unknown_model_is_404_and_no_data_is_an_empty_answer(client, ds):
    assert client.get(f"/api/v1/models/{uuid.uuid4()}/performance", headers=ds).status_code == 404
    model = model_with_versions(client, ds)
    answer = client.get(f"/api/v1/models/{model['name']}/performance", headers=ds).json
    assert answer["series"] == [] and answer["summary"]["predictions"] == 0 and answer["summary"]["accuracy"] is None
