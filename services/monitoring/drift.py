"""Data drift: a model's recent predictions' features against its version's reference sample, or any
two datasets against each other (POST /api/v1/drift-reports).

The version is the one live on the model's endpoint (production's first), else the latest, unless the
caller names one. Its reference is the sample of training features the training stored with it
(`reference_sha256`); a version without one (uploaded, or trained before samples were kept) has no
drift report. The current window is the last `hours` of that version's predictions that carry features.
Each feature gets drift_tests.feature_drift (Evidently's test choice and thresholds); the overall score
is the share of features that drifted, and its severity: none at 0, low below 0.2, medium below 0.4,
high below 0.6, critical from 0.6. With `correction=bh` the p-value tests' p-values are adjusted by
Benjamini-Hochberg across the features before they are compared with their threshold.

Computed on each request for now, in the web process: numpy, scipy and pandas load on the first one.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.ingestion import BadRecord
from services.monitoring.records import Versions
from services.monitoring.tables import Prediction
from shared.artifacts import ArtifactStore
from shared.errors import Conflict
from shared.registry_client import RegistryClient
from shared.served_model import CATEGORICAL, NUMERIC

SEVERITIES = ((0.2, "low"), (0.4, "medium"), (0.6, "high"))
# A dataset column of these pandas dtypes is numeric (bool is categorical, as training treats it).
NUMERIC_DTYPES = ("int", "uint", "float")


def severity(score: float) -> str:
    if score == 0:
        return "none"
    return next((name for bound, name in SEVERITIES if score < bound), "critical")


def model_drift(*, session: Session, versions: Versions, artifacts: ArtifactStore, model_ref: str,
                version: int | None, hours: int, correction: str, now: datetime) -> dict[str, Any]:
    import pandas as pd

    model_id = versions.registry.model(model_ref)["id"]  # by id or name; NotFound is a 404
    try:
        number = versions.number(model_id, version)
    except BadRecord as exc:
        raise Conflict(f"No drift report: {exc}.") from exc
    described = versions.registry.version(model_id, number)
    if not described.get("reference_sha256"):
        raise Conflict(f"Version {number} has no reference sample to compare with (uploaded versions, and versions "
                       "trained before reference samples were kept, have none): train a version to monitor its drift.")
    since = now - timedelta(hours=hours)
    features = session.scalars(sa.select(Prediction.features).where(
        Prediction.model_id == uuid.UUID(model_id), Prediction.version == number, Prediction.predicted_at >= since,
        Prediction.features.is_not(None))).all()
    if not features:
        raise Conflict(f"No drift report: version {number} has no prediction with features in the last {hours} "
                       "hours to compare with its reference.")
    reference = _frame(artifacts, described["reference_sha256"])
    current = pd.DataFrame.from_records(features, columns=list(reference.columns))
    profiled = (described.get("profile") or {}).get("features") or {}
    kinds = {name: (profiled.get(name) or {}).get("kind", NUMERIC) for name in reference.columns}
    return {
        "model_id": model_id, "version": number, "computed_at": now.isoformat(), "correction": correction,
        "reference": {"sha256": described["reference_sha256"], "rows": len(reference)},
        "window": {"hours": hours, "since": since.isoformat(), "until": now.isoformat(), "predictions": len(features)},
        **_compared(reference, current, kinds, correction),
    }


def datasets_drift(*, registry: RegistryClient, artifacts: ArtifactStore, reference_id: uuid.UUID,
                   current_id: uuid.UUID, correction: str, now: datetime) -> dict[str, Any]:
    """The same comparison for any two datasets the registry holds, over the columns both have (as
    Evidently's report compares two frames)."""
    reference_dataset, current_dataset = registry.dataset(reference_id), registry.dataset(current_id)
    shared = [column for column in reference_dataset["schema"]
              if column["name"] in {other["name"] for other in current_dataset["schema"]}]
    if not shared:
        raise Conflict("The two datasets have no column in common to compare.")
    names = [column["name"] for column in shared]
    kinds = {column["name"]: NUMERIC if column["dtype"].startswith(NUMERIC_DTYPES) else CATEGORICAL
             for column in shared}
    reference, current = (_frame(artifacts, dataset["sha256"])[names] for dataset in (reference_dataset, current_dataset))
    return {
        "computed_at": now.isoformat(), "correction": correction,
        "reference": {"dataset_id": str(reference_id), "rows": len(reference)},
        "current": {"dataset_id": str(current_id), "rows": len(current)},
        **_compared(reference, current, kinds, correction),
    }


def _frame(artifacts: ArtifactStore, sha256: str):
    import pandas as pd

    return pd.read_csv(io.BytesIO(artifacts.read_bytes(sha256)))


def _compared(reference, current, kinds: dict[str, str], correction: str) -> dict[str, Any]:
    """Per feature (column), its drift; the overall score and severity."""
    from services.monitoring import drift_tests

    results = [drift_tests.feature_drift(name, kind, reference[name].tolist(), current[name].tolist())
               for name, kind in kinds.items()]
    rows = [asdict(result) for result in results if result is not None]
    if correction == "bh":
        tested = [row for row in rows if row["p_value"] is not None]
        for row, adjusted in zip(tested, drift_tests.benjamini_hochberg([row["p_value"] for row in tested])):
            row["p_value_adjusted"], row["drifted"] = adjusted, adjusted < row["threshold"]
    drifted = [row["name"] for row in rows if row["drifted"]]
    score = len(drifted) / len(rows) if rows else 0.0
    return {"overall_drift_score": score, "severity": severity(score), "drifted_features": drifted, "features": rows}
