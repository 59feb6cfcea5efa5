"""Prediction records clients send to monitoring: the brief's example 5 as written, batches whose bad
records cost only themselves, and what a wrong request gets. (A record's default version when one is
live: tests/integration/test_deployments.py, which has a rollout worker.)"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.monitoring.tables import Actual, Prediction, RecordedMetric
from tests.support.deployments import model_with_versions
from tests.support.registry import bearer

pytestmark = pytest.mark.integration

PREDICTIONS = "/api/v1/monitoring/predictions"
METRICS = "/api/v1/monitoring/metrics"


def stored(app, table=Prediction) -> list:
    with app.extensions["modelyard"].db.transaction() as session:
        return list(session.scalars(sa.select(table).order_by(table.request_id)))


def stored_metrics(app) -> list[RecordedMetric]:
    with app.extensions["modelyard"].db.transaction() as session:
        return list(session.scalars(sa.select(RecordedMetric).order_by(RecordedMetric.name)))


def test_the_briefs_example_5_is_stored_as_written(app, client, ds):
    model = model_with_versions(client, ds, count=2)
    body = {"model_id": model["id"], "prediction": {"prediction": 0.85, "confidence": 0.92}, "actual": {"actual": 1},
            "context": {"request_id": "req-123", "user_id": "user-456"}}
    response = client.post(PREDICTIONS, json=body, headers=ds)
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 1, "stored": 1, "duplicates": 0, "rejected": []}
    [row] = stored(app)
    # Nothing is live: the model's latest version made it.
    assert (str(row.model_id), row.version, row.request_id, row.unit_id) == (model["id"], 2, "req-123", "user-456")
    assert (row.prediction, row.context, row.features) == (body["prediction"], body["context"], None)
    [actual] = stored(app, Actual)  # beside the prediction, as a late one would be
    assert (str(actual.model_id), actual.request_id, actual.actual) == (model["id"], "req-123", {"actual": 1})
    # 0.85 against an actual of 1: a binary model's probability of 1, right.
    summary = client.get(f"/api/v1/models/{model['id']}/performance", headers=ds).json["summary"]
    assert (summary["with_actuals"], summary["accuracy"]) == (1, 1.0)
    # Sent again: the request id is the model's already.
    again = client.post(PREDICTIONS, json=body, headers=ds)
    assert again.status_code == 202 and again.json["duplicates"] == 1 and len(stored(app)) == 1


def test_a_batch_stores_its_good_records_and_names_each_bad_one(app, client, ds):
    model = model_with_versions(client, ds)
    good = {"model_id": model["id"], "prediction": 1, "features": {"sepal_length": 5.1}, "latency_ms": 3.5,
            "timestamp": "2026-12-01T10:00:00+00:00"}
    records = [
        {**good, "request_id": "a", "version": 1},
        {**good, "request_id": "b", "model_id": str(uuid.uuid4())},  # no such model
        {**good, "request_id": "c", "version": 7},  # no such version
        "not a record",
        {**good, "request_id": "d", "colour": "red"},  # unknown field
        {**good, "request_id": "e", "timestamp": "yesterday"},
        {**good, "request_id": "f", "latency_ms": -1},
        {**good, "request_id": "g", "unit_id": 42},
    ]
    response = client.post(PREDICTIONS, json={"records": records}, headers=ds)
    assert response.status_code == 202, response.json
    answer = response.json
    assert (answer["accepted"], answer["stored"]) == (1, 1)
    reasons = {item["index"]: item["reason"] for item in answer["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]
    assert "No model" in reasons[1] and "no version 7" in reasons[2] and "JSON object" in reasons[3]
    assert "colour" in reasons[4] and "timestamp" in reasons[5] and "latency_ms" in reasons[6]
    assert "unit_id" in reasons[7]
    [row] = stored(app)
    assert (row.request_id, row.version, row.features, row.latency_ms) == ("a", 1, {"sepal_length": 5.1}, 3.5)
    assert row.predicted_at.isoformat().startswith("2026-12-01T10:00:00")


@pytest.mark.parametrize("body, status, field", [
    ({"model_id": "00000000-0000-4000-8000-000000000000", "prediction": 1}, 404, None),
    ({"model_id": "not-a-uuid", "prediction": 1}, 422, "record"),
    ({"prediction": 1}, 422, "record"),
    ({"records": []}, 422, "records"),
    ({"records": "all of them"}, 422, "records"),
    ({"records": [{"prediction": 1}], "model_id": "x"}, 422, "model_id"),
    ({"model_id": "x", "prediction": 1, "colour": "red"}, 422, "colour"),
])
def test_a_wrong_request_is_refused_whole_and_changes_nothing(app, client, ds, body, status, field):
    model_with_versions(client, ds)
    response = client.post(PREDICTIONS, json=body, headers=ds)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    if field:
        assert field in response.json["errors"]
    assert stored(app) == []


def test_too_many_records_is_413_and_a_viewer_is_refused(app, client, ds):
    model = model_with_versions(client, ds)
    limit = app.extensions["modelyard"].settings.max_ingest_records
    record = {"model_id": model["id"], "prediction": 1}
    response = client.post(PREDICTIONS, json={"records": [record] * (limit + 1)}, headers=ds)
    assert response.status_code == 413 and "smaller batches" in response.json["detail"]
    viewer = client.post(PREDICTIONS, json=record, headers=bearer(app, "viewer", "vic"))
    assert viewer.status_code == 403
    assert client.post(PREDICTIONS, json=record).status_code == 401
    assert stored(app) == []


def test_actuals_join_their_predictions_by_request_id_whenever_they_come(app, client, ds):
    model = model_with_versions(client, ds)
    actuals = "/api/v1/monitoring/actuals"
    # Before its prediction is stored, and a correction of it in the same batch: the last one counts.
    early = {"records": [{"model_id": model["id"], "request_id": "r-1", "actual": 0},
                         {"model_id": model["id"], "request_id": "r-1", "actual": 1},
                         {"model_id": model["id"], "request_id": "r-2"},
                         {"model_id": str(uuid.uuid4()), "request_id": "r-3", "actual": 1}]}
    response = client.post(actuals, json=early, headers=ds)
    assert response.status_code == 202, response.json
    assert response.json["accepted"] == 2
    assert [(item["index"], item["reason"].split(":")[0]) for item in response.json["rejected"]] == [
        (2, "missing"), (3, "No model has the id " + early["records"][3]["model_id"] + ".")]
    assert client.post("/api/v1/monitoring/predictions", json={"model_id": model["id"], "request_id": "r-1",
                                                               "prediction": 1}, headers=ds).status_code == 202
    # Days later, a correction for one sent alone.
    assert client.post(actuals, json={"model_id": model["id"], "request_id": "r-1", "actual": "churned"},
                       headers=ds).status_code == 202
    with app.extensions["modelyard"].db.transaction() as session:
        joined = session.execute(sa.select(Prediction.request_id, Actual.actual).join(
            Actual, sa.and_(Actual.model_id == Prediction.model_id, Actual.request_id == Prediction.request_id))).all()
    assert joined == [("r-1", "churned")]
    missing = client.post(actuals, json={"model_id": model["id"], "actual": 1}, headers=ds)
    assert missing.status_code == 422 and "request_id" in missing.json["detail"]
    unknown = client.post(actuals, json={"model_id": str(uuid.uuid4()), "request_id": "x", "actual": 1}, headers=ds)
    assert unknown.status_code == 404


def test_the_briefs_example_5_metrics_are_recorded_one_row_per_metric_at_their_time(app, client, ds):
    model = model_with_versions(client, ds)
    body = {"model_id": model["id"], "metrics": {"accuracy": 0.87, "precision": 0.85, "recall": 0.89, "f1_score": 0.87,
                                                 "latency": 150, "throughput": 100},
            "context": {"batch_size": 100, "timestamp": "2026-12-04T10:00:00Z"}}
    response = client.post(METRICS, json=body, headers=ds)
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 1, "metrics": 6, "rejected": []}
    rows = {row.name: row for row in stored_metrics(app)}
    assert {name: row.value for name, row in rows.items()} == {
        "accuracy": 0.87, "precision": 0.85, "recall": 0.89, "f1": 0.87, "latency": 150.0, "throughput": 100.0}
    first = rows["f1"]
    assert (str(first.model_id), first.version, first.context, first.arm) == (model["id"], 1, body["context"], None)
    assert first.measured_at.isoformat().startswith("2026-12-04T10:00:00")


def test_metrics_out_of_range_are_refused_and_a_batch_keeps_the_good_ones(app, client, ds):
    model = model_with_versions(client, ds)
    refused = client.post(METRICS, json={"model_id": model["id"], "metrics": {"accuracy": 1.7, "latency": -3,
                                                                              "revenue": -12.5}}, headers=ds)
    assert refused.status_code == 422
    assert set(refused.json["errors"]["metrics"]) == {"accuracy", "latency"}  # revenue may be anything finite
    test_id = str(uuid.uuid4())
    batch = {"records": [
        {"model_id": model["id"], "metrics": {"conversion": 0.031}, "ab_test_id": test_id, "arm": "B"},
        {"model_id": model["id"], "metrics": {"recall": 2}},
        {"model_id": model["id"], "metrics": {}},
        {"model_id": model["id"], "metrics": {"accuracy": True}},
        {"model_id": model["id"], "metrics": {"accuracy": 0.9}, "arm": ""},
    ]}
    answer = client.post(METRICS, json=batch, headers=ds).json
    assert (answer["accepted"], answer["metrics"]) == (1, 1)
    assert [item["index"] for item in answer["rejected"]] == [1, 2, 3, 4]
    assert "recall" in answer["rejected"][0]["reason"] and "arm" in answer["rejected"][3]["reason"]
    [row] = stored_metrics(app)
    assert (row.name, row.value, str(row.ab_test_id), row.arm) == ("conversion", 0.031, test_id, "B")
    unknown = client.post(METRICS, json={"model_id": str(uuid.uuid4()), "metrics": {"accuracy": 0.9}}, headers=ds)
    assert unknown.status_code == 404
