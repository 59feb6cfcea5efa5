"""A model's sensitive features: the registry keeps the list, monitoring stores their values as keyed
hashes or profile bins and never in clear, and drift still finds the shifted ones."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import re
import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from services.monitoring.handlers import SensitiveFeatureLists, VersionBaselines
from services.monitoring.tables import Prediction, SensitiveFeatures, VersionBaseline
from services.registry.handlers import TrainingOutcomes
from services.training.profile import profile_training_data
from shared.config import load_settings
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from tests.support.deployments import skops_model
from tests.support.registry import create_model, model_body, write_trail

pytestmark = pytest.mark.integration

MODELS = "/api/v1/models"
PREDICTIONS = "/api/v1/monitoring/predictions"
FEATURES = ["income", "age", "plan", "region", "tenure"]
SENSITIVE = ["income", "plan", "region", "tenure"]
KINDS = {"income": "numeric", "age": "numeric", "plan": "categorical", "region": "categorical", "tenure": "numeric"}
HASHED = re.compile(r"^hmac:[0-9a-f]{32}$")
BINNED = re.compile(r"^(< |> |\[)")


def _events(app, event_type: str) -> list[dict]:
    with app.extensions["modelyard"].db.transaction() as session:
        return [row.envelope for row in session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.seq))]


def _rows(app, query):
    with app.extensions["modelyard"].db.transaction() as session:
        return list(session.scalars(query))


def test_sensitive_features_are_some_of_the_models_features_on_create_and_patch(app, client, ds, settings_overrides):
    model = create_model(client, ds, features=FEATURES, sensitive_features=["plan", "income", "plan"])
    assert model["sensitive_features"] == ["plan", "income"]  # a repeat counts once
    assert client.get(f"{MODELS}/{model['id']}", headers=ds).json["sensitive_features"] == ["plan", "income"]
    assert create_model(client, ds, features=FEATURES)["sensitive_features"] == []

    before = write_trail(app, settings_overrides)
    unknown = client.post(MODELS, json=model_body(features=FEATURES, sensitive_features=["plan", "ssn", "zip"]),
                          headers=ds)
    assert unknown.status_code == 422 and "'ssn', 'zip'" in unknown.json["errors"]["sensitive_features"][0]
    no_features = client.post(MODELS, json=model_body(sensitive_features=["plan"]), headers=ds)
    assert no_features.status_code == 422 and "'plan'" in no_features.json["detail"]
    bad = client.post(MODELS, json=model_body(features=FEATURES, sensitive_features="plan"), headers=ds)
    assert bad.status_code == 422 and "sensitive_features" in bad.json["errors"]

    path = f"{MODELS}/{model['id']}"
    patched = client.patch(path, json={"sensitive_features": ["region", "ssn"]}, headers=ds)
    assert patched.status_code == 422 and "'ssn'" in patched.json["errors"]["sensitive_features"][0]
    # Dropping a sensitive feature from `features` alone is refused, never silently unprotected.
    dropped = client.patch(path, json={"features": ["age", "plan"]}, headers=ds)
    assert dropped.status_code == 422 and "'income'" in dropped.json["errors"]["features"][0]
    assert write_trail(app, settings_overrides) == before  # every refusal changed nothing
    assert client.get(path, headers=ds).json["features"] == FEATURES

    both = client.patch(path, json={"features": ["age", "plan"], "sensitive_features": ["plan"]}, headers=ds)
    assert both.status_code == 200 and both.json["sensitive_features"] == ["plan"]
    cleared = client.patch(path, json={"sensitive_features": []}, headers=ds)
    assert cleared.status_code == 200 and cleared.json["sensitive_features"] == []

    [created] = [event for event in _events(app, "model.created") if event["payload"]["model_id"] == model["id"]]
    assert created["payload"]["sensitive_features"] == ["plan", "income"]
    updates = [event["payload"] for event in _events(app, "model.updated")]
    assert [update["sensitive_features"] for update in updates] == [["plan"], []]
    assert updates[0]["changes"] == {"features": ["age", "plan"], "sensitive_features": ["plan"]}

    document = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    assert {"sensitive_features"} <= set(document["Model"]["properties"]) & set(document["ModelCreate"]["properties"])


def test_monitoring_keeps_each_models_latest_list_whatever_the_order_events_arrive_in(app, client, ds, admin):
    db, consumer = app.extensions["modelyard"].db, SensitiveFeatureLists()
    model = create_model(client, ds, features=FEATURES, sensitive_features=["plan"])
    for sensitive in (["plan", "income"], ["region"]):
        assert client.patch(f"{MODELS}/{model['id']}", json={"sensitive_features": sensitive},
                            headers=ds).status_code == 200
    [created], updates = _events(app, "model.created"), _events(app, "model.updated")

    def stored() -> list[str] | None:
        row = _rows(app, sa.select(SensitiveFeatures))
        return row[0].features if row else None

    assert process(db, consumer, updates[1])
    assert stored() == ["region"]
    for late in (updates[0], created):  # older than what monitoring has: changes nothing
        assert process(db, consumer, late)
        assert stored() == ["region"]
    assert not process(db, consumer, updates[1])  # a redelivery is skipped
    assert client.delete(f"{MODELS}/{model['id']}", headers=admin).status_code == 204
    [deleted] = _events(app, "model.deleted")
    assert process(db, consumer, deleted)
    assert stored() is None


def _columns(rng: np.random.Generator, n: int, shifted: bool) -> dict[str, list]:
    return {
        "income": rng.normal(50 + (15 if shifted else 0), 10, n).round(3).tolist(),
        "age": rng.normal(40, 12, n).round(3).tolist(),
        "plan": rng.choice(["basic", "pro", "team"], n, p=[0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]).tolist(),
        "region": rng.choice(["north", "south", "east"], n).tolist(),
        "tenure": rng.gamma(2.0, 12.0, n).round(2).tolist(),
    }


def _trained_version(app, model_id: str, reference: pd.DataFrame, settings_overrides: dict) -> dict:
    """Version 1 as a training registers it (training.completed, with its profile and reference sample),
    and monitoring's copy of it and of the model's list, from the registry's events."""
    runtime = app.extensions["modelyard"]
    profile = profile_training_data(reference, np.zeros(len(reference)), KINDS)
    artifact = runtime.artifacts.put_bytes(skops_model())
    sample = runtime.artifacts.put_bytes(reference.to_csv(index=False).encode())
    completed = build_envelope("training.completed", {
        "job_id": str(uuid.uuid4()), "model_id": model_id, "artifact_sha256": artifact.sha256, "dataset_id": None,
        "dataset_sha256": "0" * 64, "estimator": "logistic_regression", "best_params": {}, "cv_metrics": {},
        "test_metrics": {}, "random_state": 0, "library_versions": {}, "profile": profile,
        "reference_sha256": sample.sha256, "reference_rows": len(reference), "actor": "dana"}, producer="training")
    assert process(runtime.db, TrainingOutcomes(load_settings(settings_overrides)), completed)
    [registered] = _events(app, "model_version.registered")
    assert registered["payload"]["bin_edges"] == {name: profile["features"][name]["bin_edges"]
                                                  for name in ("income", "age", "tenure")}
    assert process(runtime.db, VersionBaselines(), registered)
    for created in _events(app, "model.created"):
        assert process(runtime.db, SensitiveFeatureLists(), created)
    return profile


def _expected_hash(key: str, model_id: str, feature: str, value: str) -> str:
    derived = hmac.new(key.encode(), json.dumps([model_id, feature]).encode(), hashlib.sha256).digest()
    return "hmac:" + hmac.new(derived, value.encode(), hashlib.sha256).hexdigest()[:32]


def _expected_bin(edges: list[float], value: float) -> str:
    if value < edges[0]:
        return f"< {edges[0]!r}"
    if value > edges[-1]:
        return f"> {edges[-1]!r}"
    index = min(bisect.bisect_right(edges, value) - 1, len(edges) - 2)
    return f"[{edges[index]!r}, {edges[index + 1]!r}{']' if index == len(edges) - 2 else ')'}"


def test_stored_predictions_hold_no_sensitive_value_in_clear_and_drift_finds_the_shifted_ones(
        app, client, ds, settings_overrides):
    model = create_model(client, ds, features=FEATURES, sensitive_features=SENSITIVE)
    rng = np.random.default_rng(7)
    reference = pd.DataFrame(_columns(rng, 800, False))
    profile = _trained_version(app, model["id"], reference, settings_overrides)

    current = _columns(rng, 300, True)
    for name in ("age", "region", "tenure"):
        current[name] = _columns(rng, 300, False)[name]
    now = datetime.now(timezone.utc).isoformat()
    records = [{"model_id": model["id"], "request_id": f"r-{i}", "prediction": 1, "timestamp": now,
                "features": {name: values[i] for name, values in current.items()}} for i in range(300)]
    records[0]["features"].update(income=None, plan=None)  # missing stays missing
    assert client.post(PREDICTIONS, json={"records": records}, headers=ds).status_code == 202
    # The brief's example 5, features-less, still lands as it did.
    example = client.post(PREDICTIONS, json={
        "model_id": model["id"], "prediction": {"prediction": 0.85, "confidence": 0.92}, "actual": {"actual": 1},
        "context": {"request_id": "req-123", "user_id": "user-456"}}, headers=ds)
    assert example.status_code == 202 and example.json["stored"] == 1

    rows = {row.request_id: row for row in _rows(app, sa.select(Prediction))}
    assert len(rows) == 301 and rows["req-123"].features is None
    sent = {record["request_id"]: record["features"] for record in records}
    key = settings_overrides["feature_hash_key"]
    for request_id, features in sent.items():
        stored = rows[request_id].features
        assert stored["age"] == features["age"]  # not sensitive: as sent
        for name in SENSITIVE:
            if features[name] is None:
                assert stored[name] is None
            elif KINDS[name] == "categorical":
                assert stored[name] == _expected_hash(key, model["id"], name, features[name])
            else:
                assert stored[name] == _expected_bin(profile["features"][name]["bin_edges"], features[name])
    # Read as the column holds it: no category sent appears in it, and no sensitive number.
    with app.extensions["modelyard"].db.transaction() as session:
        text = session.scalar(sa.select(sa.func.group_concat(sa.cast(Prediction.features, sa.Text), " ")
                                        if session.get_bind().dialect.name == "sqlite" else
                                        sa.func.string_agg(sa.cast(Prediction.features, sa.Text), " ")))
    assert "age" in text and not any(f'"{category}"' in text for category in ("basic", "pro", "team", "north",
                                                                             "south", "east"))
    stored = [row.features for row in rows.values() if row.features]
    assert all(HASHED.match(features[name]) for features in stored for name in ("plan", "region") if features[name])
    assert all(isinstance(features[name], str) and BINNED.match(features[name])
               for features in stored for name in ("income", "tenure") if features[name] is not None)

    response = client.get(f"/api/v1/models/{model['id']}/drift", headers=ds)
    assert response.status_code == 200, response.json
    report = response.json
    assert sorted(report["drifted_features"]) == ["income", "plan"]
    tests = {row["name"]: (row["kind"], row["test"]) for row in report["features"]}
    assert tests == {"income": ("categorical", "chi_square"), "age": ("numeric", "ks"),
                     "plan": ("categorical", "chi_square"), "region": ("categorical", "chi_square"),
                     "tenure": ("categorical", "chi_square")}


def test_a_version_without_a_profile_stores_no_sensitive_number_and_hashes_the_rest(app, client, ds,
                                                                                   settings_overrides):
    from tests.support.deployments import model_with_versions

    model = model_with_versions(client, ds, sensitive_features=["sepal_length", "sepal_width"])
    db = app.extensions["modelyard"].db
    for event_type, consumer in (("model.created", SensitiveFeatureLists()),
                                 ("model_version.registered", VersionBaselines())):
        for event in _events(app, event_type):
            assert process(db, consumer, event)
    [baseline] = _rows(app, sa.select(VersionBaseline))
    assert baseline.bin_edges is None  # uploaded: no profile
    record = {"model_id": model["id"], "prediction": 1, "request_id": "one",
              "features": {"sepal_length": 5.1, "sepal_width": "wide", "petal_length": 1.4}}
    assert client.post(PREDICTIONS, json=record, headers=ds).status_code == 202
    [row] = _rows(app, sa.select(Prediction))
    assert row.features == {"sepal_length": None, "petal_length": 1.4, "sepal_width": _expected_hash(
        settings_overrides["feature_hash_key"], model["id"], "sepal_width", "wide")}
