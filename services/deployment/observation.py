"""What serving replicas report, and the judgement of a candidate under real traffic.

Each replica sends, every couple of seconds, its counts per deployment over a recent window (requests,
errors, latency percentiles) and its own CPU and memory: per deployment, not version, since an A/B
test may serve the same version number of two models on one endpoint. While a rollout moves traffic
and through the observation window after, the control plane adds up the candidate's numbers across
the replicas that reported recently and compares them with the deployment's alert thresholds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment.tables import Endpoint, ReplicaReport
from services.deployment.traffic import aware
from shared.db import utcnow

# A replica that has not reported for this long is not counted, and shows as unhealthy.
FRESH = timedelta(seconds=10)


def record_report(session: Session, endpoint: Endpoint, report: dict[str, Any]) -> None:
    """Keep a replica's latest report of the endpoint (one row per replica, replaced each time)."""
    values = {"reported_at": utcnow(), "window_seconds": report["window_seconds"], "versions": report["versions"],
              "cpu_percent": report.get("cpu_percent"), "rss_bytes": report.get("rss_bytes")}
    updated = session.execute(sa.update(ReplicaReport).where(
        ReplicaReport.endpoint_id == endpoint.id, ReplicaReport.replica == report["replica"]).values(values))
    if updated.rowcount == 0:
        session.add(ReplicaReport(endpoint_id=endpoint.id, replica=report["replica"], **values))


def replicas(session: Session, endpoint_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every replica that reported on the endpoint, newest first, with whether it is still reporting."""
    now = utcnow()
    rows = session.scalars(sa.select(ReplicaReport).where(ReplicaReport.endpoint_id == endpoint_id)
                           .order_by(ReplicaReport.reported_at.desc()))
    return [{"replica": row.replica, "reported_at": row.reported_at, "healthy": now - aware(row.reported_at) <= FRESH,
             "cpu_percent": row.cpu_percent, "rss_bytes": row.rss_bytes, "window_seconds": row.window_seconds,
             "versions": row.versions} for row in rows]


@dataclass(frozen=True)
class Observed:
    requests: int
    errors: int
    # The worst replica's, a conservative bound on the whole pool's.
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0


def observed(session: Session, endpoint_id: uuid.UUID, deployment_id: uuid.UUID) -> Observed:
    """The deployment's numbers over the replicas that reported recently."""
    cutoff = utcnow() - FRESH
    requests = errors = 0
    p95: float | None = None
    for row in session.scalars(sa.select(ReplicaReport).where(ReplicaReport.endpoint_id == endpoint_id)):
        stats = (row.versions or {}).get(str(deployment_id))
        if stats is None or aware(row.reported_at) < cutoff:
            continue
        requests += stats["requests"]
        errors += stats["errors"]
        latency = (stats.get("latency_ms") or {}).get("p95")
        if latency is not None and stats["requests"]:
            p95 = latency if p95 is None else max(p95, latency)
    return Observed(requests, errors, p95)


def breach(numbers: Observed, monitoring: dict[str, Any]) -> str | None:
    """Which alert threshold the candidate's numbers break, with the value; None while they hold, or
    while fewer than `min_requests` requests make a judgement premature."""
    if numbers.requests < monitoring["min_requests"]:
        return None
    thresholds = monitoring["alert_thresholds"]
    if numbers.error_rate > thresholds["error_rate"]:
        return (f"error rate {numbers.error_rate:.1f}% over the {thresholds['error_rate']:g}% threshold "
                f"({numbers.errors} of {numbers.requests} requests failed)")
    if numbers.p95_ms is not None and numbers.p95_ms > thresholds["latency"]:
        return (f"p95 latency {numbers.p95_ms:.0f} ms over the {thresholds['latency']:g} ms threshold "
                f"({numbers.requests} requests)")
    return None
