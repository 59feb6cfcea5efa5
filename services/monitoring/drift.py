"""Data drift: a model version's recent predictions against its reference sample (any two sides, for
POST /api/v1/drift-reports, are in drift_reports.py, with these tests).

A version's reference is the sample of training features (with the model's prediction of each row)
the training stored with it; its kinds, feature importances and model type come from monitoring's own
copy of the version's baseline (tables.VersionBaseline). A version without a reference (uploaded, or
trained before samples were kept) has no drift report. The current window is the version's
predictions that carry features, of the last `hours` or the last `predictions` of them, at most
MAX_WINDOW_ROWS (the most recent).

Each feature gets drift_tests.feature_drift (Evidently's test choice and thresholds). The overall score
is the share of features that drifted, each counted by its share of the version's permutation
importance when the version has them (a drifted feature the model ignores counts for nothing), and
its severity: none at 0, low below 0.2, medium below 0.4, high below 0.6, critical from 0.6. With
`correction=bh` the p-value tests' p-values are adjusted by Benjamini-Hochberg across the features
before they are compared with their threshold. Prediction drift tests the window's predictions
against the model's predictions of the reference rows, as a categorical feature for classifiers.
Concept drift (concept_drift.py) scores the window's predictions that have their actual against the
version's test metrics.

A process keeps the most recently used reference samples parsed and prepared (`_reference`, by their
artifact's sha256), and reads a window's JSON features as text parsed at once (`_window`): the drift pool's
budget is 1,000 models a minute on 2 processes.

A model's reports are stored (tables.DriftReport): GET answers the latest one for the same window and
correction while it is younger than `drift_fresh_seconds`, and beat's sweep (workers/drift.py) keeps
the served versions' reports fresh. A report whose score passes DETECTED_SCORE, after one that did
not, emits `drift.detected`.
"""

from __future__ import annotations

import io
import threading
import uuid
from collections import OrderedDict
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.ingestion import BadRecord
from services.monitoring.joined import joined, parsed
from services.monitoring.records import Versions
from services.monitoring import concept_drift, sensitive
from services.monitoring.scores import NUMERIC_TYPES, as_label, label_of, number, value_of
from services.monitoring.tables import Actual, DriftReport, Prediction, VersionBaseline
from shared.artifacts import ArtifactStore
from shared.errors import Conflict
from shared.events.outbox import emit
from shared.served_model import CATEGORICAL, NUMERIC, REFERENCE_PREDICTION

PRODUCER = "monitoring"
SEVERITIES = ((0.2, "low"), (0.4, "medium"), (0.6, "high"))
# The brief's drift alert: a score above it is drift worth telling (drift.detected).
DETECTED_SCORE = 0.2
# The most recent predictions a window holds at most: enough for every test's power, and a bounded read.
MAX_WINDOW_ROWS = 100_000
# A dataset column of these pandas dtypes is numeric (bool is categorical, as training treats it).
NUMERIC_DTYPES = ("int", "uint", "float")
# Reference samples a process keeps parsed and prepared (drift_tests.Column), the most recently used: a few
# MB each (10,000 rows).
REFERENCES_KEPT = 16
# Predictions of these types are a classifier's labels, or a regressor's numbers, as they are (_predicted): no
# object to take the prediction from, no probability of 1 to make a label of (scores.label_of), no bool that
# a regressor's numbers leave out.
PLAIN_LABELS = frozenset({str, int, bool, type(None)})
PLAIN_NUMBERS = frozenset({int, float, type(None)})
# Postgres's memory for sorting a window's rows (_window): MAX_WINDOW_ROWS rows of 20 features take ~60 MB.
WINDOW_WORK_MEM = "64MB"


def severity(score: float) -> str:
    if score == 0:
        return "none"
    return next((name for bound, name in SEVERITIES if score < bound), "critical")


def model_drift(*, session: Session, versions: Versions, artifacts: ArtifactStore, model_ref: str,
                version: int | None, hours: int, predictions: int | None, correction: str, refresh: bool,
                fresh_seconds: float, standard_hours: int, now: datetime, hash_key: str) -> dict[str, Any]:
    """The drift report of the model's version (default the live one): the stored one when fresh."""
    model_id = versions.registry.model(model_ref)["id"]  # by id or name; NotFound is a 404
    try:
        number = versions.number(model_id, version)
    except BadRecord as exc:
        raise Conflict(f"No drift report: {exc}.") from exc
    baseline = session.get(VersionBaseline, (uuid.UUID(model_id), number))
    if baseline is None or not baseline.reference_sha256:
        raise Conflict(f"Version {number} has no reference sample to compare with (uploaded versions, and versions "
                       "trained before reference samples were kept, have none): train a version to monitor its drift.")
    window_hours = None if predictions else hours
    if not refresh:
        stored = session.scalars(sa.select(DriftReport).where(
            DriftReport.model_id == baseline.model_id, DriftReport.version == number,
            DriftReport.window_hours.is_(None) if window_hours is None else DriftReport.window_hours == window_hours,
            DriftReport.window_predictions.is_(None) if predictions is None
            else DriftReport.window_predictions == predictions,
            DriftReport.correction == correction, DriftReport.computed_at >= now - timedelta(seconds=fresh_seconds),
        ).order_by(DriftReport.computed_at.desc()).limit(1)).first()
        if stored is not None:
            return stored.report
    report = version_drift(session=session, artifacts=artifacts, baseline=baseline, hours=window_hours,
                           predictions=predictions, correction=correction, standard_hours=standard_hours, now=now,
                           hash_key=hash_key)
    if report is None:
        window = f"the last {predictions} predictions" if predictions else f"the last {hours} hours"
        raise Conflict(f"No drift report: version {number} has no prediction with features in {window} to compare "
                       "with its reference.")
    return report


def version_drift(*, session: Session, artifacts: ArtifactStore, baseline: VersionBaseline, hours: int | None,
                  predictions: int | None, correction: str, standard_hours: int, now: datetime,
                  hash_key: str) -> dict[str, Any] | None:
    """Compute and store the version's report over its window; None when the window has no features.

    Only a standard report (the last `standard_hours`, no correction: what beat's sweep computes) may
    emit drift.detected, and alerts read only those: a report someone asked for over another window
    is answered and kept, but tells nobody."""
    since = now - timedelta(hours=hours) if hours else None
    window = _window(session, baseline, since=since, limit=min(predictions or MAX_WINDOW_ROWS, MAX_WINDOW_ROWS),
                     now=now)
    if window is None:
        return None
    features, outputs = window
    reference = _reference(artifacts, baseline.reference_sha256)
    names = [name for name in reference.frame.columns if name != REFERENCE_PREDICTION]
    current = {name: [row.get(name) for row in features] for name in names}
    kinds = {name: (baseline.feature_kinds or {}).get(name, NUMERIC) for name in names}
    # The window holds sensitive features as ingestion stored them (hashes, bins): so must the reference.
    protector = sensitive.reference_protector(session, baseline, names, hash_key=hash_key)
    kinds.update(dict.fromkeys(protector.protect, CATEGORICAL))
    report = {
        "id": str(uuid.uuid4()), "model_id": str(baseline.model_id), "version": baseline.version,
        "computed_at": now.isoformat(), "correction": correction,
        "reference": {"sha256": baseline.reference_sha256, "rows": len(reference.frame)},
        "window": {"hours": hours, "predictions": predictions, "since": since.isoformat() if since else None,
                   "until": now.isoformat(), "rows": len(features)},
        **_compared({name: reference.column(name, protector) for name in names}, current, kinds, correction,
                    baseline.feature_importances),
        "prediction_drift": None,
    }
    if REFERENCE_PREDICTION in reference.frame:
        classifier = baseline.model_type == "classification"
        from services.monitoring import drift_tests

        tested = drift_tests.feature_drift("prediction", CATEGORICAL if classifier else NUMERIC,
                                           reference.column(REFERENCE_PREDICTION), _predicted(outputs, classifier))
        report["prediction_drift"] = asdict(tested) if tested else None
    report["concept_drift"] = _concept_drift(session, baseline, since=since, predictions=predictions, now=now)
    _store(session, baseline, report, hours=hours, predictions=predictions,
           standard=hours == standard_hours and predictions is None and correction == "none", now=now)
    return report


def _predicted(outputs: list[Any], classifier: bool) -> list[Any]:
    """The window's predictions as tested: a classifier's labels (a string, number or bool), a regressor's
    finite numbers; anything else a client sent (a list, an object) counts as missing."""
    if set(map(type, outputs)) <= (PLAIN_LABELS if classifier else PLAIN_NUMBERS):
        return outputs  # as tested already: the usual case, without three Python calls per prediction
    predicted = [value_of(value, "prediction") for value in outputs]
    if classifier:
        return [label if isinstance(label, (str, int, float, bool)) else None for label in map(label_of, predicted)]
    return [number(value) for value in predicted]


def _window(session: Session, baseline: VersionBaseline, *, since: datetime | None, limit: int,
            now: datetime) -> tuple[list[dict], list[Any]] | None:
    """The window's predictions that carry features, the most recent `limit` of them: their features and
    predictions as two lists (a label needs no probabilities); None when there is none.

    Each JSON column comes as one text, its rows' values joined by the database (string_agg, SQLite's
    group_concat: both in one pass, so in one order), parsed at once with orjson: the driver's work
    per row and per value was a third of a report's time. On Postgres the window's rows are sorted in
    memory (10,000 rows take ~6 MB: the default work_mem sent them to disk) by this process alone (a
    parallel plan's workers take the cores the drift pool's other process and Postgres need)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.set_config("work_mem", WINDOW_WORK_MEM, True),
                                  sa.func.set_config("max_parallel_workers_per_gather", "0", True)))
    recent = sa.select(Prediction.features, Prediction.prediction).where(
        Prediction.model_id == baseline.model_id, Prediction.version == baseline.version,
        Prediction.features.is_not(None), *window_days(since), Prediction.predicted_at <= now)
    if since is not None:
        recent = recent.where(Prediction.predicted_at >= since)
    recent = recent.order_by(Prediction.predicted_at.desc()).limit(limit).subquery()
    texts = session.execute(sa.select(*map(joined, recent.c))).one()
    if texts[0] is None:
        return None
    return tuple(map(parsed, texts))


class Reference:
    """A version's reference sample as parsed from its artifact: its frame (shared between reports: read
    it, never change it in place) and each column prepared for the tests (drift_tests.column) on first use,
    a sensitive one as ingestion stores it (protecting 10,000 values costs a report ~10 ms a feature)."""

    def __init__(self, frame):
        self.frame = frame
        self._columns: dict[tuple, Any] = {}

    def column(self, name: str, protector: sensitive.Protector | None = None):
        """The column prepared; protected by `protector` when it protects `name`, kept by how it does (the
        models whose versions share a sample protect it each their own way)."""
        from services.monitoring import drift_tests

        how = protector.how.get(name) if protector else None
        if (name, how) not in self._columns:
            values = self.frame[name]
            if how is not None:
                values = [protector.value(name, value) for value in values.tolist()]
            self._columns[name, how] = drift_tests.column(values)
        return self._columns[name, how]


_references: OrderedDict[str, Reference] = OrderedDict()
_references_lock = threading.Lock()


def _reference(artifacts: ArtifactStore, sha256: str) -> Reference:
    """The reference sample stored as artifact `sha256`, kept for the next reports of this process (the
    most recently used REFERENCES_KEPT): an artifact never changes under its sha256, and parsing and
    preparing a 10,000-row sample costs a report more than its tests."""
    with _references_lock:
        if sha256 in _references:
            _references.move_to_end(sha256)
            return _references[sha256]
    reference = Reference(_frame(artifacts, sha256))
    with _references_lock:
        _references[sha256] = reference
        while len(_references) > REFERENCES_KEPT:
            _references.popitem(last=False)
    return reference


def _concept_drift(session: Session, baseline: VersionBaseline, *, since: datetime | None, predictions: int | None,
                   now: datetime) -> dict[str, Any] | None:
    """The window's predictions that have their actual (features or not), scored against the version's
    test metrics (concept_drift.py); None for a model type or version without a baseline to compare."""
    query = sa.select(Prediction.prediction, Actual.actual).join(
        Actual, sa.and_(Actual.model_id == Prediction.model_id, Actual.request_id == Prediction.request_id)).where(
        Prediction.model_id == baseline.model_id, Prediction.version == baseline.version, Prediction.error.is_(None),
        *window_days(since), Prediction.predicted_at <= now)
    if since is not None:
        query = query.where(Prediction.predicted_at >= since)
    rows = session.execute(query.order_by(Prediction.predicted_at.desc())
                           .limit(min(predictions or MAX_WINDOW_ROWS, MAX_WINDOW_ROWS))).all()
    if baseline.model_type == "classification":
        labels = [label_of(value_of(row.prediction, "prediction")) for row in rows]
        return concept_drift.classification(
            [as_label(label) == as_label(value_of(row.actual, "actual")) for label, row in zip(labels, rows)],
            baseline.metrics)
    if baseline.model_type in NUMERIC_TYPES:
        pairs = [(number(value_of(row.prediction, "prediction")), number(value_of(row.actual, "actual")))
                 for row in rows]
        return concept_drift.regression([actual - predicted for predicted, actual in pairs
                                         if predicted is not None and actual is not None], baseline.metrics)
    return None


def _store(session: Session, baseline: VersionBaseline, report: dict[str, Any], *, hours: int | None,
           predictions: int | None, standard: bool, now: datetime) -> None:
    previous = session.scalar(standard_reports(hours or 0).with_only_columns(DriftReport.overall_drift_score).where(
        DriftReport.model_id == baseline.model_id, DriftReport.version == baseline.version,
    ).order_by(DriftReport.computed_at.desc()).limit(1)) if standard else None
    session.add(DriftReport(id=uuid.UUID(report["id"]), model_id=baseline.model_id, version=baseline.version,
                            window_hours=hours, window_predictions=predictions, correction=report["correction"],
                            overall_drift_score=report["overall_drift_score"], severity=report["severity"],
                            report=report, computed_at=now))
    score = report["overall_drift_score"]
    if standard and score > DETECTED_SCORE and (previous is None or previous <= DETECTED_SCORE):
        emit(session, "drift.detected", {
            "model_id": baseline.model_id, "version": baseline.version, "report_id": report["id"],
            "overall_drift_score": score, "severity": report["severity"],
            "drifted_features": report["drifted_features"], "computed_at": now,
        }, producer=PRODUCER)


def standard_reports(hours: int) -> sa.Select:
    """The reports beat's sweep computes: the last `hours` (drift_window_hours), no correction."""
    return sa.select(DriftReport).where(DriftReport.window_hours == hours, DriftReport.window_predictions.is_(None),
                                        DriftReport.correction == "none")


def fresh_report(model_id: Any, version: Any, *, hours: int, fresh_seconds: float, now: datetime) -> sa.Select:
    """The version's standard reports younger than `fresh_seconds`."""
    return standard_reports(hours).with_only_columns(DriftReport.id).where(
        DriftReport.model_id == model_id, DriftReport.version == version,
        DriftReport.computed_at >= now - timedelta(seconds=fresh_seconds))


def served_versions(session: Session, *, hours: int, fresh_seconds: float, now: datetime) -> list[tuple[str, int]]:
    """The versions with a reference that served predictions with features in the last `hours` and have no
    report of that window younger than `fresh_seconds`: beat's sweep recomputes these.

    Each such version is probed on its own: its model's newest prediction of it with features in the
    window (ix_predictions_model_id_predicted_at backwards, in the window's days' partitions), which stops
    at the first; the distinct versions among the window's predictions read every one of them (6.5 s at
    10M). The probe is a scalar subquery with LIMIT 1: Postgres turns an EXISTS into a join that reads them
    all again. A version its model no longer serves costs its probe a pass over that model's window."""
    since = now - timedelta(hours=hours)
    newest = sa.select(Prediction.predicted_at).where(
        Prediction.model_id == VersionBaseline.model_id, Prediction.version == VersionBaseline.version,
        *window_days(since), Prediction.predicted_at >= since, Prediction.features.is_not(None),
    ).order_by(Prediction.predicted_at.desc()).limit(1)
    fresh = fresh_report(VersionBaseline.model_id, VersionBaseline.version, hours=hours, fresh_seconds=fresh_seconds,
                         now=now)
    rows = session.execute(
        sa.select(VersionBaseline.model_id, VersionBaseline.version)
        .where(VersionBaseline.reference_sha256.is_not(None), ~fresh.exists(), newest.scalar_subquery().is_not(None))
        .order_by(VersionBaseline.model_id, VersionBaseline.version)).all()
    return [(str(model_id), number) for model_id, number in rows]


def window_days(since: datetime | None) -> tuple:
    """The condition on predictions' `day` (the UTC day of predicted_at, the partition key) that a window
    from `since` implies: Postgres then reads only those days' partitions."""
    return () if since is None else (Prediction.day >= since.astimezone(timezone.utc).date(),)


def _frame(artifacts: ArtifactStore, sha256: str):
    import pandas as pd

    return pd.read_csv(io.BytesIO(artifacts.read_bytes(sha256)))


def _compared(reference, current, kinds: dict[str, str], correction: str,
              importances: dict[str, float] | None) -> dict[str, Any]:
    """Per feature (column), its drift; the overall score, weighted by `importances` when they weigh any
    tested feature, and its severity. `reference` and `current` map each name in `kinds` to its values
    (a frame's column, a list of JSON values) or to a prepared drift_tests.Column."""
    from services.monitoring import drift_tests

    results = [drift_tests.feature_drift(name, kind, reference[name], current[name]) for name, kind in kinds.items()]
    rows = [asdict(result) for result in results if result is not None]
    if correction == "bh":
        tested = [row for row in rows if row["p_value"] is not None]
        for row, adjusted in zip(tested, drift_tests.benjamini_hochberg([row["p_value"] for row in tested])):
            row["p_value_adjusted"], row["drifted"] = adjusted, adjusted < row["threshold"]
    drifted = [row["name"] for row in rows if row["drifted"]]
    weights = {row["name"]: (importances or {}).get(row["name"], 0.0) for row in rows}
    total = sum(weights.values())
    if total > 0:
        score, weighting = sum(weights[name] for name in drifted) / total, "importance"
    else:
        score, weighting = (len(drifted) / len(rows) if rows else 0.0), "share"
    return {"overall_drift_score": score, "severity": severity(score), "weighting": weighting,
            "drifted_features": drifted, "features": rows}
