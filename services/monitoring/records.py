"""Prediction records and actuals a client sends (POST /api/v1/monitoring/predictions and .../actuals),
checked and stored.

A client's record says which model made the prediction and, if it knows, which version; without one it
is the version live on the model's endpoint (production's, when the model is live in several
environments), else the model's latest. `context` is kept as given, and its `request_id` and `user_id`
stand in for the record's own `request_id` and `unit_id` when those are left out (the brief's example
sends them so); a record with no request id gets one. From there a record is a prediction record as
serving writes them (shared.prediction_records), checked and stored the same way (ingestion.py).

An actual is `{model_id, request_id, actual}`: the true outcome of the prediction with that request id,
stored apart from it (tables.Actual), so that it may come before the prediction is stored or days after.

One record is all or nothing: an unknown model is a 404, anything else wrong a 422. In a batch, each
bad record is reported by its index with the reason, and the good ones are stored.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.ingestion import (
    BadRecord, actual_row, json_object, object_field, store_actuals, store_predictions, timestamp,
)
from services.monitoring.tables import RecordedMetric, VersionBaseline
from shared.errors import NotFound, ValidationFailed
from shared.metric_names import canonical_metric
from shared.registry_client import RegistryClient

ACTUAL_FIELDS = ("model_id", "request_id", "actual")
METRIC_FIELDS = ("model_id", "version", "metrics", "context", "timestamp", "ab_test_id", "arm")
# The range of each metric the platform knows (latency in milliseconds); any other (a business metric
# such as revenue) takes any finite number.
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "accuracy": (0, 1), "precision": (0, 1), "recall": (0, 1), "f1": (0, 1), "roc_auc": (0, 1),
    "latency": (0, None), "throughput": (0, None), "rmse": (0, None), "mae": (0, None), "log_loss": (0, None),
    "r2": (None, 1),
}
METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
API_FIELDS = ("model_id", "version", "endpoint", "request_id", "unit_id", "features", "prediction",
              "probabilities", "actual", "context", "latency_ms", "timestamp", "error")
# Whose live version a record without one belongs to, when the model is live in several environments.
ENVIRONMENTS_FIRST = ("production", "staging", "development")

# model id -> {environment: live version number}
LiveVersions = Callable[[str], dict[str, int]]


@dataclass
class Versions:
    """The version each record belongs to; the registry and the control plane are asked once per model.

    A model and version found in monitoring's own copy of the registered versions (VersionBaseline, kept
    by the registry's events) need no question to the registry: asking it over HTTP, as the caller, was
    most of a single record's time. One not there yet (its event on the way) is asked about."""

    registry: RegistryClient
    live_versions: LiveVersions
    session: Session | None = None

    def __post_init__(self) -> None:
        self._models: dict[str, str | None] = {}  # model id as sent -> its id, None when there is none
        self._numbers: dict[tuple[str, int | None], int | None] = {}
        self._baselines: dict[uuid.UUID, frozenset[int]] = {}  # model -> its versions monitoring knows

    def model_id(self, model_id: Any) -> str:
        """The model's id; NotFound if the registry has no such model."""
        if not isinstance(model_id, str):
            raise BadRecord(f"model_id: a model's id, not {model_id!r}")
        known = self._models.get(model_id)
        if known is not None:  # every record of a batch names its model: one look-up after the first
            return known
        try:
            uuid.UUID(model_id)
        except ValueError:
            raise BadRecord(f"model_id: a model's id (a UUID), not {model_id!r}") from None
        if model_id not in self._models and self._registered(model_id, None):
            self._models[model_id] = str(uuid.UUID(model_id))
        if model_id not in self._models:
            try:
                self._models[model_id] = self.registry.model(model_id)["id"]
            except NotFound:
                self._models[model_id] = None
        if self._models[model_id] is None:
            raise NotFound(f"No model has the id {model_id}.")
        return self._models[model_id]

    def number(self, model_id: str, version: Any) -> int:
        """`version` if the model has it; without one, the live version, else the latest."""
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
            raise BadRecord(f"version: a version number, not {version!r}")
        key = (model_id, version)
        if key not in self._numbers:
            self._numbers[key] = self._find(model_id, version)
        if self._numbers[key] is None:
            raise BadRecord(f"version: the model has no version {version}" if version is not None
                            else "version: the model has no version yet")
        return self._numbers[key]

    def _registered(self, model_id: str, version: int | None) -> bool:
        if self.session is None:
            return False
        key = uuid.UUID(model_id)
        if key not in self._baselines:  # the model's versions read once: one query for the model and its version
            self._baselines[key] = frozenset(self.session.scalars(
                sa.select(VersionBaseline.version).where(VersionBaseline.model_id == key)))
        return bool(self._baselines[key]) if version is None else version in self._baselines[key]

    def _find(self, model_id: str, version: int | None) -> int | None:
        if version is not None:
            if self._registered(model_id, version):
                return version
            return version if self.registry.version(model_id, version) is not None else None
        live = self.live_versions(model_id)
        for environment in ENVIRONMENTS_FIRST:
            if environment in live:
                return live[environment]
        latest = self.registry.version(model_id, "latest")
        return None if latest is None else latest["number"]


def _context_value(context: dict, name: str) -> Any:
    value = context.get(name)
    # A user id is often a number; the store keeps ids as text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _prediction_record(sent: Any, versions: Versions, now: datetime) -> dict[str, Any]:
    """A client's record as a prediction record (shared.prediction_records), or BadRecord/NotFound."""
    json_object(sent, API_FIELDS)
    context = object_field(sent, "context") or {}
    if sent.get("timestamp") is not None:
        timestamp("timestamp", sent["timestamp"])  # named as the client named it
    model_id = versions.model_id(sent.get("model_id"))
    return {
        "model_id": model_id,
        "version": versions.number(model_id, sent.get("version")),
        "request_id": sent.get("request_id") or _context_value(context, "request_id") or str(uuid.uuid4()),
        "unit_id": sent.get("unit_id") or _context_value(context, "user_id"),
        "endpoint": sent.get("endpoint"),
        "features": sent.get("features"),
        "prediction": sent.get("prediction"),
        "probabilities": sent.get("probabilities"),
        "actual": sent.get("actual"),
        "context": sent.get("context"),
        "latency_ms": sent.get("latency_ms"),
        "error": sent.get("error"),
        "predicted_at": sent.get("timestamp") or now.isoformat(),
    }


def _checked(records: list[Any], one: bool, convert: Callable[[Any], dict[str, Any]]) -> tuple[list, list, list]:
    """The records `convert` accepts with their positions, and the rest by index with the reason; for
    `one` record, its fault raised as the request's (404 or 422)."""
    converted: list[dict[str, Any]] = []
    positions: list[int] = []
    rejected: list[dict[str, Any]] = []
    for index, sent in enumerate(records):
        try:
            converted.append(convert(sent))
            positions.append(index)
        except (BadRecord, NotFound) as exc:
            if one:
                _refuse(exc)
            rejected.append({"index": index, "reason": exc.detail if isinstance(exc, NotFound) else str(exc)})
    return converted, positions, rejected


def record_predictions(*, session: Session, versions: Versions, records: list[Any], one: bool, now: datetime,
                       hash_key: str) -> dict[str, Any]:
    """Store the good records (sensitive features protected with `hash_key`); `one`: a single record, whose
    fault is the request's (404 or 422)."""
    converted, positions, rejected = _checked(records, one, lambda sent: _prediction_record(sent, versions, now))
    outcome = store_predictions(session=session, records=converted, hash_key=hash_key)
    if one and outcome.rejected:
        raise ValidationFailed(f"The record cannot be stored: {outcome.rejected[0][1]}.",
                               errors={"record": [outcome.rejected[0][1]]})
    rejected += [{"index": positions[index], "reason": reason} for index, reason in outcome.rejected]
    return {"accepted": outcome.stored + outcome.duplicates, "stored": outcome.stored,
            "duplicates": outcome.duplicates, "rejected": sorted(rejected, key=lambda item: item["index"])}


def _actual(sent: Any, versions: Versions, now: datetime) -> dict[str, Any]:
    json_object(sent, ACTUAL_FIELDS, what="an actual")
    missing = [name for name in ACTUAL_FIELDS if sent.get(name) is None]
    if missing:
        raise BadRecord(f"missing: {', '.join(missing)}")
    return actual_row({**sent, "model_id": versions.model_id(sent["model_id"])}, received_at=now)


def record_actuals(*, session: Session, versions: Versions, records: list[Any], one: bool,
                   now: datetime) -> dict[str, Any]:
    """Store each good actual by its model and request id (a later one corrects an earlier); the
    prediction it belongs to may be stored already, or arrive later."""
    rows, _, rejected = _checked(records, one, lambda sent: _actual(sent, versions, now))
    store_actuals(session, rows)
    return {"accepted": len(rows), "rejected": rejected}


class BadMetrics(BadRecord):
    """Metrics out of range or not numbers, each named with its reason."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("metrics: " + "; ".join(f"{name}: {messages[0]}" for name, messages in errors.items()))
        self.errors = errors


def _metric_errors(metrics: Any) -> dict[str, list[str]]:
    if not isinstance(metrics, dict) or not metrics:
        return {"_schema": ["metrics: an object of at least one metric name and its value"]}
    errors: dict[str, list[str]] = {}
    for name, value in metrics.items():
        if not METRIC_NAME.fullmatch(name):
            errors[name] = ["a metric's name: a letter, then letters, digits, _ . or -, 64 at most"]
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            errors[name] = [f"a finite number, not {value!r}"]
        else:
            low, high = METRIC_RANGES.get(canonical_metric(name), (None, None))
            if (low is not None and value < low) or (high is not None and value > high):
                errors[name] = [f"{value} is outside {canonical_metric(name)}'s range "
                                f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"]
    return errors


def _metric_rows(sent: Any, versions: Versions, now: datetime) -> list[dict[str, Any]]:
    json_object(sent, METRIC_FIELDS)
    errors = _metric_errors(sent.get("metrics"))
    if errors:
        raise BadMetrics(errors)
    context = object_field(sent, "context")
    # The brief's example puts the time in its context.
    when = sent.get("timestamp") or (context or {}).get("timestamp")
    measured_at = now if when is None else timestamp("timestamp", when)
    arm = sent.get("arm")
    if arm is not None and (not isinstance(arm, str) or not 1 <= len(arm) <= 64):
        raise BadRecord(f"arm: the A/B test arm's name, not {arm!r}")
    ab_test_id = sent.get("ab_test_id")
    try:
        ab_test_id = None if ab_test_id is None else uuid.UUID(ab_test_id)
    except (TypeError, ValueError, AttributeError):
        raise BadRecord(f"ab_test_id: an A/B test's id, not {ab_test_id!r}") from None
    model_id = versions.model_id(sent.get("model_id"))
    version = versions.number(model_id, sent.get("version"))
    return [{"id": uuid.uuid4(), "model_id": uuid.UUID(model_id), "version": version, "name": canonical_metric(name),
             "value": float(value), "measured_at": measured_at, "context": context, "ab_test_id": ab_test_id,
             "arm": arm, "recorded_at": now} for name, value in sent["metrics"].items()]


def record_metrics(*, session: Session, versions: Versions, records: list[Any], one: bool,
                   now: datetime) -> dict[str, Any]:
    """Store each good record's metrics, one row per metric; `f1_score` is stored as f1."""
    batches, _, rejected = _checked(records, one, lambda sent: _metric_rows(sent, versions, now))
    rows = [row for batch in batches for row in batch]
    if rows:
        session.execute(sa.insert(RecordedMetric), rows)
    return {"accepted": len(batches), "metrics": len(rows), "rejected": rejected}


def _refuse(exc: BadRecord | NotFound) -> None:
    if isinstance(exc, NotFound):
        raise exc
    if isinstance(exc, BadMetrics):  # named per metric, as a form's fields are
        raise ValidationFailed("Some metrics cannot be recorded.", errors={"metrics": exc.errors}) from exc
    raise ValidationFailed(f"The record cannot be stored: {exc}.", errors={"record": [str(exc)]}) from exc
