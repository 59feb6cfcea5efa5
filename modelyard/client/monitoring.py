"""Recording what happened to predictions made outside the platform's endpoints, and metrics about them."""

from __future__ import annotations

from typing import Any

from modelyard.client.http import Transport
from modelyard.client.results import Recorded


class Monitoring:
    def __init__(self, http: Transport):
        self._http = http

    def record_predictions(self, records: dict | list[dict]) -> Recorded:
        """Record one prediction (the brief's example 5: model_id, prediction, actual, context ...) or a list;
        a request id (`request_id`, else `context.request_id`) sent again the same day counts as a duplicate."""
        return Recorded.from_json(self._http.post("/monitoring/predictions", _body(records)))

    def record_actuals(self, records: dict | list[dict]) -> Recorded:
        """Record true outcomes: {model_id, request_id, actual}, one or a list; a later one replaces the earlier."""
        return Recorded.from_json(self._http.post("/monitoring/actuals", _body(records)))

    def record_metrics(self, model_id: str, metrics: dict[str, float], **fields: Any) -> Recorded:
        """Record metrics computed elsewhere ({name: value}), with `context`, `version`, `timestamp`,
        `ab_test_id` and `arm` as the server takes them."""
        return Recorded.from_json(self._http.post("/monitoring/metrics",
                                                  {"model_id": model_id, "metrics": metrics, **fields}))


def _body(records: dict | list[dict]) -> dict:
    return {"records": list(records)} if isinstance(records, list) else records
