"""The serving replicas' CPU and memory, as shares of what their deployment gives them, told to others.

Replicas report every couple of seconds (observation.record_report): too often to announce each one.
Every minute beat's `deploy.report_usage` emits `endpoint.usage_reported` for each endpoint with a
live deployment and replicas that reported since the last round: each replica's last CPU and memory
as a percent of the live deployment's `deployment_config.resources` (the requests and limits of its
Kubernetes manifests, so the percentages are the utilization Kubernetes' autoscaler targets, and
memory at 100% is where the kubelet kills the pod). Monitoring alerts on them; it never reads this
service's tables.

A replica's `cpu_percent` is its process's CPU time over its last report interval in percent of one
core; `rss_bytes` its resident memory.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment.tables import LIVE, Deployment, Endpoint, ReplicaReport
from services.deployment.traffic import PRODUCER, aware
from shared.events.outbox import emit

# Beat's interval (service.py); a replica heard from within it is in the round's announcement.
INTERVAL = timedelta(seconds=60)
# Kubernetes quantity suffixes (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/).
SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
            "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")


def quantity(text: str) -> float:
    """A Kubernetes quantity's value: "500m" CPU is 0.5 cores, "512Mi" memory 536,870,912 bytes."""
    number, suffix = _QUANTITY.match(text).groups()  # schemas.QUANTITY let only these through
    return float(number) * SUFFIXES[suffix]


def announce_usage(session: Session, now: datetime) -> int:
    """Emit endpoint.usage_reported for each endpoint live and reported on since the last round; how many."""
    since = now - INTERVAL
    reports: dict = {}
    for report in session.scalars(sa.select(ReplicaReport).where(ReplicaReport.reported_at >= since)
                                  .order_by(ReplicaReport.endpoint_id, ReplicaReport.replica)):
        reports.setdefault(report.endpoint_id, []).append(report)
    if not reports:
        return 0
    rows = session.execute(sa.select(Endpoint, Deployment).join(Deployment, Deployment.endpoint_id == Endpoint.id)
                           .where(Endpoint.id.in_(reports), Deployment.status == LIVE))
    count = 0
    for endpoint, live in rows:
        resources = live.config["deployment_config"]["resources"]
        cores, memory = quantity(resources["cpu"]), quantity(resources["memory"])
        emit(session, "endpoint.usage_reported", {
            "endpoint": endpoint.name, "model_id": endpoint.model_id, "environment": endpoint.environment,
            "deployment_id": live.id, "cpu_cores": cores, "memory_bytes": int(memory),
            "replicas": [{"replica": report.replica, "reported_at": aware(report.reported_at),
                          "cpu_percent": None if report.cpu_percent is None else report.cpu_percent / cores,
                          "memory_percent": None if report.rss_bytes is None else 100.0 * report.rss_bytes / memory,
                          "rss_bytes": report.rss_bytes}
                         for report in reports[endpoint.id]],
        }, producer=PRODUCER)
        count += 1
    return count
