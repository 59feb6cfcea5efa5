"""POST /api/v1/drift-reports: the drift report of any two sides, as Evidently users compare two frames.

A side is one of:
- {dataset_id}: a dataset the registry holds (its columns' kinds from their inferred dtypes);
- reference {model_id, version?}: that version's reference sample of its training features, as a
  model's own drift report reads it (a version without one is a 409 saying why);
- current {model_id, version?, window?}: that version's predictions with features in the window, the
  last `hours` or the last `predictions` of them (default: the last MODELYARD_DRIFT_WINDOW_HOURS; none
  in it is a 409), at most drift.MAX_WINDOW_ROWS, the most recent.
A model's version defaults to its live one (production's first), else its latest, as everywhere in
monitoring. The columns both sides have are compared by drift.py's tests; a column's kind is the one a
model version's profile gives (the reference's, then the current's), else its dataset dtype's. The
score is weighted by the feature importances of the model version on either side (the reference's
first), when it has them. Nothing is stored: an ad hoc report tells nobody.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.drift import MAX_WINDOW_ROWS, _compared, _frame
from services.monitoring.ingestion import BadRecord
from services.monitoring.records import Versions
from services.monitoring.tables import Prediction, VersionBaseline
from shared.artifacts import ArtifactStore
from shared.errors import Conflict
from shared.served_model import CATEGORICAL, NUMERIC, REFERENCE_PREDICTION

# A dataset column of these pandas dtypes is numeric (bool is categorical, as training treats it).
NUMERIC_DTYPES = ("int", "uint", "float")


@dataclass
class Side:
    frame: Any  # a pandas DataFrame, one column per feature
    described: dict[str, Any]  # what the report says of this side
    kinds: dict[str, str] = field(default_factory=dict)
    # True when the kinds come from a model version's profile, which knows them better than a dtype does.
    profiled: bool = False
    importances: dict[str, float] | None = None


def drift_report(*, session: Session, versions: Versions, artifacts: ArtifactStore, reference: dict[str, Any],
                 current: dict[str, Any], correction: str, default_hours: int, now: datetime) -> dict[str, Any]:
    """The drift of `current` against `reference`, over the columns both have."""
    first = _dataset(versions, artifacts, reference["dataset_id"]) if reference.get("dataset_id") \
        else _reference_sample(session, versions, artifacts, reference["model_id"], reference.get("version"))
    second = _dataset(versions, artifacts, current["dataset_id"]) if current.get("dataset_id") \
        else _window(session, versions, current["model_id"], current.get("version"),
                     current.get("window") or {"hours": default_hours}, now)
    theirs = set(second.frame.columns)
    names = [name for name in first.frame.columns if name in theirs]
    if not names:
        raise Conflict("The two sides have no column in common to compare.")
    kinds = {name: NUMERIC for name in names}
    # A profile's kinds over a dtype's, and the reference's over the current's (sorted is stable).
    for side in sorted((second, first), key=lambda side: side.profiled):
        kinds.update({name: kind for name, kind in side.kinds.items() if name in kinds})
    importances = first.importances if first.importances else second.importances
    return {"computed_at": now.isoformat(), "correction": correction, "reference": first.described,
            "current": second.described,
            **_compared(first.frame[names], second.frame[names], kinds, correction, importances)}


def _dataset(versions: Versions, artifacts: ArtifactStore, dataset_id: uuid.UUID) -> Side:
    dataset = versions.registry.dataset(dataset_id)  # an unknown one is a 422 naming dataset_id
    frame = _frame(artifacts, dataset["sha256"])
    kinds = {column["name"]: NUMERIC if column["dtype"].startswith(NUMERIC_DTYPES) else CATEGORICAL
             for column in dataset["schema"]}
    return Side(frame, {"dataset_id": str(dataset_id), "rows": len(frame)}, kinds)


def _baseline(session: Session, versions: Versions, model_ref: str,
              version: int | None) -> tuple[VersionBaseline | None, str, int]:
    model_id = versions.registry.model(model_ref)["id"]  # by id or name; NotFound is a 404
    try:
        number = versions.number(model_id, version)
    except BadRecord as exc:
        raise Conflict(f"No drift report: {exc}.") from exc
    return session.get(VersionBaseline, (uuid.UUID(model_id), number)), model_id, number


def _reference_sample(session: Session, versions: Versions, artifacts: ArtifactStore, model_ref: str,
                      version: int | None) -> Side:
    baseline, model_id, number = _baseline(session, versions, model_ref, version)
    if baseline is None or not baseline.reference_sha256:
        raise Conflict(f"Version {number} has no reference sample to compare with (uploaded versions, and versions "
                       "trained before reference samples were kept, have none): train a version, or compare a "
                       "dataset.")
    frame = _frame(artifacts, baseline.reference_sha256).drop(columns=[REFERENCE_PREDICTION], errors="ignore")
    return Side(frame, {"model_id": model_id, "version": number, "sha256": baseline.reference_sha256,
                        "rows": len(frame)},
                dict(baseline.feature_kinds or {}), True, baseline.feature_importances)


def _window(session: Session, versions: Versions, model_ref: str, version: int | None, window: dict[str, int],
            now: datetime) -> Side:
    import pandas as pd

    baseline, model_id, number = _baseline(session, versions, model_ref, version)
    hours, predictions = window.get("hours"), window.get("predictions")
    since = now - timedelta(hours=hours) if hours else None
    query = sa.select(Prediction.features).where(
        Prediction.model_id == uuid.UUID(model_id), Prediction.version == number, Prediction.features.is_not(None),
        Prediction.predicted_at <= now)
    if since is not None:
        query = query.where(Prediction.predicted_at >= since)
    rows = session.scalars(query.order_by(Prediction.predicted_at.desc())
                           .limit(min(predictions or MAX_WINDOW_ROWS, MAX_WINDOW_ROWS))).all()
    if not rows:
        said = f"the last {predictions} predictions" if predictions else f"the last {hours} hours"
        raise Conflict(f"No drift report: version {number} has no prediction with features in {said}.")
    frame = pd.DataFrame.from_records(rows)
    described = {"model_id": model_id, "version": number, "rows": len(frame),
                 "window": {"hours": hours, "predictions": predictions,
                            "since": since.isoformat() if since else None, "until": now.isoformat()}}
    if baseline is None:
        return Side(frame, described)
    return Side(frame, described, dict(baseline.feature_kinds or {}), bool(baseline.feature_kinds),
                baseline.feature_importances)
