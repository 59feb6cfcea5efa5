"""GET /api/v1/models/<id>/drift: recent predictions' features against the version's reference sample."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats

from services.monitoring.tables import DriftReport, VersionBaseline
from shared.events.outbox import OutboxEvent
from shared.served_model import REFERENCE_PREDICTION
from tests.support.deployments import model_with_versions
from tests.support.training import upload_frame

pytestmark = pytest.mark.integration

PREDICTIONS = "/api/v1/monitoring/predictions"


def _columns(rng: np.random.Generator, n: int, shifted: bool) -> dict[str, list]:
    return {
        "income": rng.normal(50 + (15 if shifted else 0), 10, n).round(3).tolist(),
        "age": rng.normal(40, 12, n).round(3).tolist(),
        "plan": rng.choice(["basic", "pro", "team"], n, p=[0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]).tolist(),
        "region": rng.choice(["north", "south", "east"], n).tolist(),
    }


def _with_reference(app, model_id: str, frame: pd.DataFrame, importances: dict[str, float] | None = None,
                    metrics: dict[str, float] | None = None) -> None:
    """Give version 1 a reference sample as training would: a CSV artifact, and its sha256 with the
    features' kinds in monitoring's baseline of the version, as its model_version.registered event
    would have carried them (the consumer's own test is in test_version_baselines.py)."""
    runtime = app.extensions["modelyard"]
    stored = runtime.artifacts.put_bytes(frame.to_csv(index=False).encode())
    kinds = {"income": "numeric", "age": "numeric", "plan": "categorical", "region": "categorical"}
    with runtime.db.transaction() as session:
        session.merge(VersionBaseline(model_id=uuid.UUID(model_id), version=1, model_type="classification",
                                      reference_sha256=stored.sha256, reference_rows=len(frame), feature_kinds=kinds,
                                      feature_importances=importances, metrics=metrics))


def test_the_drifted_features_are_the_shifted_ones(app, client, ds):
    model = model_with_versions(client, ds)
    rng = np.random.default_rng(7)
    _with_reference(app, model["id"], pd.DataFrame(_columns(rng, 800, False)))
    current = _columns(rng, 300, True)
    current["age"], current["region"] = _columns(rng, 300, False)["age"], _columns(rng, 300, False)["region"]
    now = datetime.now(timezone.utc).isoformat()
    records = [{"model_id": model["id"], "request_id": f"r-{i}", "prediction": 1, "timestamp": now,
                "features": {name: values[i] for name, values in current.items()}} for i in range(300)]
    records.append({"model_id": model["id"], "request_id": "no-features", "prediction": 0})
    assert client.post(PREDICTIONS, json={"records": records}, headers=ds).status_code == 202

    report = client.get(f"/api/v1/models/{model['id']}/drift", headers=ds)
    assert report.status_code == 200, report.json
    report = report.json
    assert sorted(report["drifted_features"]) == ["income", "plan"]
    assert report["overall_drift_score"] == 0.5 and report["severity"] == "high"
    assert report["version"] == 1 and report["window"]["rows"] == 300 and report["reference"]["rows"] == 800
    assert report["weighting"] == "share" and report["prediction_drift"] is None  # no reference predictions
    tests = {row["name"]: row["test"] for row in report["features"]}
    assert tests == {"income": "ks", "age": "ks", "plan": "chi_square", "region": "chi_square"}
    corrected = client.get(f"/api/v1/models/{model['name']}/drift?correction=bh", headers=ds).json
    assert all(row["p_value_adjusted"] >= row["p_value"] for row in corrected["features"])


def test_no_reference_or_no_recent_features_is_409_and_an_unknown_model_404(app, client, ds):
    model = model_with_versions(client, ds)
    no_reference = client.get(f"/api/v1/models/{model['id']}/drift", headers=ds)
    assert no_reference.status_code == 409 and "no reference sample" in no_reference.json["detail"]
    _with_reference(app, model["id"], pd.DataFrame(_columns(np.random.default_rng(1), 50, False)))
    no_data = client.get(f"/api/v1/models/{model['id']}/drift", headers=ds)
    assert no_data.status_code == 409 and "no prediction with features" in no_data.json["detail"]
    assert client.get(f"/api/v1/models/{uuid.uuid4()}/drift", headers=ds).status_code == 404
    assert client.get(f"/api/v1/models/{model['id']}/drift?hours=0", headers=ds).status_code == 422
    assert client.get(f"/api/v1/models/{model['id']}/drift?correction=holm", headers=ds).status_code == 422


def test_two_datasets_are_compared_over_the_columns_both_have(client, ds):
    rng = np.random.default_rng(11)
    reference = pd.DataFrame(_columns(rng, 1500, False))  # over 1,000 rows: the distance tests
    current = pd.DataFrame(_columns(rng, 700, True))
    current["age"] = _columns(rng, 700, False)["age"]
    current["only_here"] = 1.0
    first, second = upload_frame(client, ds, reference, "reference"), upload_frame(client, ds, current, "current")
    response = client.post("/api/v1/drift-reports", json={"reference": {"dataset_id": first["id"]},
                                                          "current": {"dataset_id": second["id"]}}, headers=ds)
    assert response.status_code == 200, response.json
    report = response.json
    assert {row["name"]: row["test"] for row in report["features"]} == {
        "income": "wasserstein", "age": "wasserstein", "plan": "jensen_shannon", "region": "jensen_shannon"}
    assert sorted(report["drifted_features"]) == ["income", "plan"]
    assert (report["reference"]["rows"], report["current"]["rows"]) == (1500, 700)
    unknown = client.post("/api/v1/drift-reports", json={"reference": {"dataset_id": str(uuid.uuid4())},
                                                         "current": {"dataset_id": second["id"]}}, headers=ds)
    assert unknown.status_code == 422 and "dataset_id" in unknown.json["errors"]
    disjoint = upload_frame(client, ds, pd.DataFrame({"other": [1, 2, 3]}), "other")
    apart = client.post("/api/v1/drift-reports", json={"reference": {"dataset_id": first["id"]},
                                                       "current": {"dataset_id": disjoint["id"]}}, headers=ds)
    assert apart.status_code == 409
    assert client.post("/api/v1/drift-reports", json={"reference": {}}, headers=ds).status_code == 422


def _records(model_id: str, columns: dict[str, list], predictions: list, *, first: int = 0) -> list[dict]:
    now = datetime.now(timezone.utc).isoformat()
    return [{"model_id": model_id, "request_id": f"r-{first + i}", "prediction": predictions[i], "timestamp": now,
             "features": {name: values[i] for name, values in columns.items()}} for i in range(len(predictions))]


def test_a_report_is_stored_answered_while_fresh_and_weighted_by_importance(app, client, ds):
    model = model_with_versions(client, ds)
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(_columns(rng, 600, False))
    # The model's own predictions of its reference rows: mostly class 0.
    reference[REFERENCE_PREDICTION] = rng.choice([0, 1], 600, p=[0.8, 0.2])
    # income carries most of the model's importance, plan (which drifts too) a little.
    _with_reference(app, model["id"], reference, {"income": 0.7, "age": 0.2, "plan": 0.1, "region": 0.0})
    shifted = _columns(rng, 400, True)
    shifted["age"], shifted["region"] = _columns(rng, 400, False)["age"], _columns(rng, 400, False)["region"]
    # Live predictions: mostly class 1 now.
    sent = _records(model["id"], shifted, rng.choice([0, 1], 400, p=[0.3, 0.7]).tolist())
    assert client.post(PREDICTIONS, json={"records": sent}, headers=ds).status_code == 202
    url = f"/api/v1/models/{model['id']}/drift"

    first = client.get(url, headers=ds).json
    assert sorted(first["drifted_features"]) == ["income", "plan"]
    assert first["weighting"] == "importance" and first["overall_drift_score"] == pytest.approx(0.8)
    assert first["severity"] == "critical"
    # Two classes: the proportion z-test, as Evidently picks for a binary column.
    assert first["prediction_drift"]["test"] == "z" and first["prediction_drift"]["drifted"]
    # The same window and correction while fresh: the stored report itself.
    assert client.get(url, headers=ds).json == first
    # More predictions, then refresh: a new report that counts them.
    more = _records(model["id"], _columns(rng, 100, False), [0] * 100, first=400)
    assert client.post(PREDICTIONS, json={"records": more}, headers=ds).status_code == 202
    refreshed = client.get(url + "?refresh=true", headers=ds).json
    assert refreshed["id"] != first["id"] and refreshed["window"]["rows"] == 500
    # The last 100 predictions are unshifted: nothing drifted in that window.
    latest = client.get(url + "?predictions=100", headers=ds).json
    assert latest["window"] == {**latest["window"], "rows": 100, "predictions": 100, "hours": None}
    assert latest["drifted_features"] == [] and latest["severity"] == "none"
    both = client.get(url + "?predictions=100&hours=2", headers=ds)
    assert both.status_code == 422 and "predictions" in both.json["errors"]

    with app.extensions["modelyard"].db.transaction() as session:
        stored = session.scalars(sa.select(DriftReport).order_by(DriftReport.computed_at)).all()
        detected = session.scalars(sa.select(OutboxEvent).where(OutboxEvent.type == "drift.detected")).all()
    assert [(report.window_hours, report.window_predictions) for report in stored] == [(24, None), (24, None), (None, 100)]
    # Told once: the first report passed 0.2, the refreshed one still did (no new event), the last did not.
    assert len(detected) == 1
    assert detected[0].envelope["payload"]["report_id"] == first["id"]
    assert detected[0].envelope["payload"]["drifted_features"] == ["income", "plan"]


def test_concept_drift_scores_the_windows_actuals_against_the_versions_test_accuracy(app, client, ds):
    model = model_with_versions(client, ds)
    rng = np.random.default_rng(9)
    _with_reference(app, model["id"], pd.DataFrame(_columns(rng, 200, False)), metrics={"test_accuracy": 0.95})
    sent = _records(model["id"], _columns(rng, 60, False), [1] * 60)
    for n, record in enumerate(sent):
        if n % 2:
            record["actual"] = 1 if n % 3 else 0  # 20 right and 10 wrong of the 30 with an actual
    # An actual that arrives later, for a prediction made without features, counts too.
    late = {"model_id": model["id"], "request_id": "late", "prediction": {"prediction": 0.9}}
    assert client.post(PREDICTIONS, json={"records": sent + [late]}, headers=ds).status_code == 202
    assert client.post("/api/v1/monitoring/actuals", json={"model_id": model["id"], "request_id": "late",
                                                           "actual": 0}, headers=ds).status_code == 202

    concept = client.get(f"/api/v1/models/{model['id']}/drift", headers=ds).json["concept_drift"]
    assert (concept["metric"], concept["baseline"], concept["actuals"]) == ("accuracy", 0.95, 31)
    assert concept["current"] == pytest.approx(20 / 31)
    assert concept["p_value"] == pytest.approx(stats.binomtest(20, 31, 0.95, alternative="less").pvalue, rel=1e-12)
    assert concept["drifted"] is True


def test_only_the_standard_window_tells_of_drift(app, client, ds):
    model = model_with_versions(client, ds)
    rng = np.random.default_rng(12)
    _with_reference(app, model["id"], pd.DataFrame(_columns(rng, 300, False)))
    sent = _records(model["id"], _columns(rng, 200, True), [1] * 200)
    assert client.post(PREDICTIONS, json={"records": sent}, headers=ds).status_code == 202
    url = f"/api/v1/models/{model['id']}/drift"

    def told() -> int:
        with app.extensions["modelyard"].db.transaction() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent).where(
                OutboxEvent.type == "drift.detected"))

    # Someone's own window or correction: answered and kept, but it tells nobody.
    for query in ("hours=2", "predictions=50", "correction=bh"):
        assert client.get(f"{url}?{query}", headers=ds).json["overall_drift_score"] > 0.2, query
    assert told() == 0
    assert client.get(url, headers=ds).json["overall_drift_score"] > 0.2  # the sweep's window: 24 hours
    assert told() == 1


def _shifted_predictions(client, ds, model_id: str, rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n predictions whose income and plan drifted, age and region not; their features as a frame."""
    shifted = _columns(rng, n, True)
    shifted["age"], shifted["region"] = _columns(rng, n, False)["age"], _columns(rng, n, False)["region"]
    assert client.post(PREDICTIONS, json={"records": _records(model_id, shifted, [1] * n)}, headers=ds).status_code \
        == 202
    return pd.DataFrame(shifted)


def test_an_ad_hoc_report_compares_a_models_reference_or_window_with_a_dataset_in_any_combination(app, client, ds):
    model = model_with_versions(client, ds)
    rng = np.random.default_rng(5)
    reference = pd.DataFrame(_columns(rng, 800, False))
    _with_reference(app, model["id"], reference)
    current = _shifted_predictions(client, ds, model["id"], rng, 300)
    reference_set = upload_frame(client, ds, reference, "reference")
    current_set = upload_frame(client, ds, current, "current")

    def report(reference_side: dict, current_side: dict, **extra) -> dict:
        answer = client.post("/api/v1/drift-reports", json={"reference": reference_side, "current": current_side,
                                                            **extra}, headers=ds)
        assert answer.status_code == 200, answer.json
        return answer.json

    # The model's own report, ad hoc: the same tests and figures as GET .../drift over the same window.
    own = report({"model_id": model["name"], "version": 1}, {"model_id": model["id"], "window": {"hours": 1}})
    stored = client.get(f"/api/v1/models/{model['id']}/drift?hours=1", headers=ds).json
    assert own["features"] == stored["features"] and own["overall_drift_score"] == stored["overall_drift_score"]
    assert own["reference"] == {"model_id": model["id"], "version": 1, "sha256": stored["reference"]["sha256"],
                                "rows": 800}
    assert (own["current"]["version"], own["current"]["rows"], own["current"]["window"]["hours"]) == (1, 300, 1)
    income = next(row for row in own["features"] if row["name"] == "income")
    assert income["p_value"] == pytest.approx(stats.ks_2samp(reference["income"], current["income"]).pvalue,
                                              rel=1e-9, abs=1e-12)
    # Each side may be a dataset instead, the kinds still the version's (plan categorical by its profile).
    sample_vs_data = report({"model_id": model["id"]}, {"dataset_id": current_set["id"]})
    data_vs_window = report({"dataset_id": reference_set["id"]},
                            {"model_id": model["id"], "version": 1, "window": {"predictions": 200}})
    for answer in (own, sample_vs_data, data_vs_window):
        assert sorted(answer["drifted_features"]) == ["income", "plan"], answer
        assert {row["name"]: row["test"] for row in answer["features"]} == {
            "income": "ks", "age": "ks", "plan": "chi_square", "region": "chi_square"}
    assert sample_vs_data["current"] == {"dataset_id": current_set["id"], "rows": 300}
    assert (data_vs_window["current"]["rows"], data_vs_window["current"]["window"]["predictions"]) == (200, 200)
    # The correction as `options` words it, or as `correction` (its older spelling): the same report.
    corrected = report({"model_id": model["id"]}, {"model_id": model["id"]}, options={"correction": "bh"})
    older = report({"model_id": model["id"]}, {"model_id": model["id"]}, correction="bh")
    assert corrected["correction"] == older["correction"] == "bh"
    assert corrected["features"] == older["features"]
    assert all(row["p_value_adjusted"] >= row["p_value"] for row in corrected["features"])
    assert corrected["current"]["window"]["hours"] == 24  # MODELYARD_DRIFT_WINDOW_HOURS by default


def test_an_ad_hoc_reports_bad_sides_are_refused_saying_why(app, client, ds):
    import jwt

    model = model_with_versions(client, ds)
    dataset = upload_frame(client, ds, pd.DataFrame(_columns(np.random.default_rng(2), 40, False)), "data")
    url = "/api/v1/drift-reports"
    with_data = {"current": {"dataset_id": dataset["id"]}}
    no_reference = client.post(url, json={"reference": {"model_id": model["id"]}, **with_data}, headers=ds)
    assert no_reference.status_code == 409 and "no reference sample" in no_reference.json["detail"]
    no_window = client.post(url, json={"reference": {"dataset_id": dataset["id"]},
                                       "current": {"model_id": model["id"], "window": {"hours": 2}}}, headers=ds)
    assert no_window.status_code == 409 and "no prediction with features in the last 2 hours" in \
        no_window.json["detail"]
    no_version = client.post(url, json={"reference": {"model_id": model["id"], "version": 9}, **with_data}, headers=ds)
    assert no_version.status_code == 409 and "no version 9" in no_version.json["detail"]
    unknown = client.post(url, json={"reference": {"model_id": str(uuid.uuid4())}, **with_data}, headers=ds)
    assert unknown.status_code == 404
    bad = [
        ({"dataset_id": dataset["id"], "model_id": model["id"]}, "dataset_id"),
        ({}, "dataset_id"),
        ({"dataset_id": dataset["id"], "version": 1}, "version"),
        ({"model_id": model["id"], "version": "1"}, "version"),
        ({"model_id": model["id"], "window": {"hours": 1}}, "window"),  # a reference has no window
    ]
    for side, field in bad:
        answer = client.post(url, json={"reference": side, **with_data}, headers=ds)
        assert answer.status_code == 422 and field in str(answer.json["errors"]), (side, answer.json)
    for window in ({}, {"hours": 1, "predictions": 5}, {"hours": 0}, {"predictions": 100_001}, {"days": 1}):
        answer = client.post(url, json={"reference": {"dataset_id": dataset["id"]},
                                        "current": {"model_id": model["id"], "window": window}}, headers=ds)
        assert answer.status_code == 422 and "window" in answer.json["errors"]["current"], (window, answer.json)
    both = {"reference": {"dataset_id": dataset["id"]}, **with_data}
    for extra in ({"options": {"correction": "holm"}}, {"options": {"alpha": 0.1}},
                  {"options": {"correction": "bh"}, "correction": "bh"}):
        assert client.post(url, json={**both, **extra}, headers=ds).status_code == 422, extra
    forged = jwt.encode({"sub": "x", "name": "mallory", "role": "admin"}, "not the platform's secret, long enough",
                        algorithm="HS256")
    assert client.post(url, json=both, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert client.post(url, json=both).status_code == 401


def test_an_ad_hoc_report_of_one_prediction_with_one_feature_still_answers(app, client, ds):
    model = model_with_versions(client, ds)
    _with_reference(app, model["id"], pd.DataFrame(_columns(np.random.default_rng(4), 100, False)))
    sent = {"model_id": model["id"], "request_id": "b-1", "features": {"age": 42}, "prediction": 1,
            "timestamp": "2026-12-01T10:00:00Z"}
    assert client.post(PREDICTIONS, json=sent, headers=ds).status_code == 202
    answer = client.post("/api/v1/drift-reports", json={
        "reference": {"model_id": model["id"], "version": 1},
        "current": {"model_id": model["id"], "window": {"predictions": 5000}}, "options": {"correction": "bh"}},
        headers=ds)
    assert answer.status_code == 200, answer.json
    assert answer.json["current"]["rows"] == 1 and "age" in {row["name"] for row in answer.json["features"]}
