"""A prediction record: what serving hands to monitoring for every prediction it makes.

Serving (the producer) and the ingest worker (the consumer) are separate services that never import
each other; both import this module. A record travels as a Celery argument, so it is plain JSON: ids
and timestamps are strings, and a batch of them is one `STORE_PREDICTIONS` task on `QUEUE`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

QUEUE = "ingest"
STORE_PREDICTIONS = "ingest.store_predictions"

FIELDS = ("model_id", "version", "request_id", "prediction", "predicted_at", "endpoint", "deployment_id",
          "unit_id", "features", "probabilities", "latency_ms", "error", "actual", "context")
REQUIRED = ("model_id", "version", "request_id", "predicted_at")


def prediction_record(*, model_id: uuid.UUID | str, version: int, request_id: str, predicted_at: datetime,
                      prediction: Any = None, endpoint: str | None = None,
                      deployment_id: uuid.UUID | str | None = None, unit_id: str | None = None,
                      features: dict[str, Any] | None = None, probabilities: Any = None,
                      latency_ms: float | None = None, error: str | None = None, actual: Any = None,
                      context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of one prediction (or of one that failed: `error` and no `prediction`), JSON-safe.

    `features`, `prediction`, `probabilities`, `actual` and `context` must hold plain JSON values already (numpy's through
    `.tolist()` or `.item()`): the log drops a record the broker's JSON cannot carry.
    """
    if predicted_at.tzinfo is None:
        raise ValueError("predicted_at must carry its time zone")
    return {
        "model_id": str(model_id),
        "version": version,
        "request_id": request_id,
        "prediction": prediction,
        "predicted_at": predicted_at.isoformat(),
        "endpoint": endpoint,
        "deployment_id": None if deployment_id is None else str(deployment_id),
        "unit_id": unit_id,
        "features": features,
        "probabilities": probabilities,
        "latency_ms": latency_ms,
        "error": error,
        "actual": actual,
        "context": context,
    }
