"""A deployment's own alert thresholds (its monitoring_config.alert_thresholds) as the model's alert rules.

The deployment service uses them to roll a candidate back during its rollout; once it is live they
become rules here, so the same limits keep alerting afterwards. Each threshold is a metric monitoring
evaluates (alerts.py):
- error_rate (percent of failed predictions) -> error_rate over 15 minutes;
- latency (p95 in milliseconds, as the rollout judges it) -> latency_p95_ms over 15 minutes;
- cpu, memory (percent of the replica's resources; optional) -> cpu_percent, memory_percent over 5 minutes.
Every threshold the deployment schema has is one of these, so none is left out.

The deployment service says, with deployment.live and deployment.rolled_back, which thresholds the
deployment live on the endpoint after the event has. The latest such event decides the model's rules of
this origin, whichever environment it is in: a rule is kept per metric and its threshold replaced (its
open alert stays open, judged against the new threshold from the next evaluation); a metric the new
deployment has no threshold for loses its rule, whose open alert resolves. A user may change or disable
such a rule; the next deployment to go live sets its threshold again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.alerts import retire_rule
from services.monitoring.tables import AlertRule
from shared.db import select_for_update

# threshold -> (metric, window_minutes, how the rule's name says it)
METRICS = {"error_rate": ("error_rate", 15, "error rate above {:g}%"),
           "latency": ("latency_p95_ms", 15, "p95 latency above {:g} ms"),
           "cpu": ("cpu_percent", 5, "CPU above {:g}% of a replica's CPU"),
           "memory": ("memory_percent", 5, "memory above {:g}% of a replica's memory")}
CREATED_BY = "deployment"


def follow_deployment(session: Session, *, model_id: uuid.UUID, deployment_id: uuid.UUID | None, environment: str,
                      thresholds: dict[str, Any] | None, now: datetime) -> None:
    """The model's rules of deployment origin become `thresholds` (None: the endpoint has no live deployment)."""
    wanted = {metric: (float(thresholds[key]), window, name) for key, (metric, window, name) in METRICS.items()
              if thresholds and thresholds.get(key) is not None}
    existing = session.scalars(select_for_update(session, sa.select(AlertRule).where(
        AlertRule.model_id == model_id, AlertRule.deployment_id.is_not(None)))).all()
    for rule in existing:
        if rule.metric not in wanted:
            retire_rule(session, rule, now)
            continue
        threshold, _, name = wanted.pop(rule.metric)
        rule.threshold, rule.deployment_id, rule.updated_at = threshold, deployment_id, now
        rule.name = f"{environment} deployment: {name.format(threshold)}"
    for metric, (threshold, window, name) in wanted.items():
        session.add(AlertRule(name=f"{environment} deployment: {name.format(threshold)}", model_id=model_id,
                              deployment_id=deployment_id, metric=metric, threshold=threshold, window_minutes=window,
                              enabled=True, created_by=CREATED_BY, created_at=now, updated_at=now))
