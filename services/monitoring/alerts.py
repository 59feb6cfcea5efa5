"""Alert rules, the alerts they raise, and their evaluation.

A rule watches one metric of one model (model_id) or of every model (none):
- drift_score: the overall score of the model's latest drift report of the last day;
- performance_degradation: how far, in percent, the live metric of that report's concept drift fell
  behind the version's test metric (accuracy below, rmse above), once 30 predictions had an actual;
- error_rate: the percentage of failed predictions in the last `window_minutes` (10 at least);
- latency_p95_ms: the 95th percentile latency of the predictions in the last `window_minutes`;
- cpu_percent, memory_percent: the highest of the model's serving replicas' last CPU (memory) use
  heard of in the last `window_minutes`, in percent of what its live deployment gives a replica
  (deployment_config.resources), as the deployment service announces them every minute
  (endpoint.usage_reported, kept in tables.ReplicaUsage by handlers.py).
A model's value above the threshold fires an alert, one per rule and model while it stays open
(firing, or acknowledged by an ml_engineer); a later value at or below the threshold resolves it. A
model without a value (no report, too few predictions) leaves its alert as it is. A model the registry
deleted (model.deleted, noted by handlers.py) has its open alerts resolved at the next evaluation, the
rules its deployments made deleted and its own rules disabled. Firing and resolving
emit alert.fired / alert.resolved and, when the rule has a webhook, send the change there
(workers/alerts.py, with retries). The migrations create the brief's rules for every model: drift score
above 0.2, performance 10% below the baseline, error rate above 5%, CPU and memory above 80%.

Beat evaluates every rule each minute (workers/alerts.py): one transaction, so two evaluations never
fire the same alert twice.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring import scores, webhook_secrets
from services.monitoring.drift import standard_reports
from services.monitoring.tables import (
    Alert, AlertRule, DeletedModel, DriftReport, Prediction, ReplicaUsage, WebhookDelivery,
)
from shared import audit
from shared.auth import Actor
from shared.db import select_for_update
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events.outbox import emit
from shared.pagination import Page, Sorting, paginate
from shared.tasks import enqueue_after_commit

log = logging.getLogger(__name__)

PRODUCER = "monitoring"
USAGE_METRICS = ("cpu_percent", "memory_percent")
METRICS = ("drift_score", "performance_degradation", "error_rate", "latency_p95_ms", *USAGE_METRICS)
# The thresholds that can mean something: a score in [0, 1], percentages, milliseconds.
THRESHOLD_RANGES = {"drift_score": (0.0, 1.0), "performance_degradation": (0.0, 100.0), "error_rate": (0.0, 100.0),
                    "latency_p95_ms": (0.0, 3_600_000.0), "cpu_percent": (0.0, 100.0),
                    "memory_percent": (0.0, 100.0)}
FIRING, ACKNOWLEDGED, RESOLVED = "firing", "acknowledged", "resolved"
OPEN = (FIRING, ACKNOWLEDGED)
# Fewer predictions in a window say nothing about an error rate or a latency percentile.
MIN_PREDICTIONS = 10
# A drift report older than this is no longer the model's drift.
REPORT_AGE = timedelta(days=1)
DELIVER = "alerts.deliver"  # the task workers/alerts.py defines

RULE_SORTING = Sorting(columns={"created_at": AlertRule.created_at, "name": AlertRule.name},
                       tiebreaker=AlertRule.id, default="created_at")
ALERT_SORTING = Sorting(columns={"fired_at": Alert.fired_at}, tiebreaker=Alert.id, default="-fired_at")


def _threshold_problem(metric: str, threshold: float) -> None:
    low, high = THRESHOLD_RANGES[metric]
    if not low <= threshold <= high:
        raise ValidationFailed(f"A {metric} threshold is between {low:g} and {high:g}.",
                               errors={"threshold": [f"Must be between {low:g} and {high:g} for {metric}."]})


def _webhook_problem(url: str, allow_private: bool) -> None:
    from services.monitoring.webhooks import UnsafeWebhook, check_url

    try:
        check_url(url, allow_private=allow_private)
    except UnsafeWebhook as exc:
        raise ValidationFailed(f"The webhook URL is refused: {exc}", errors={"webhook_url": [str(exc)]}) from None


def create_rule(session: Session, *, actor: Actor, request_id: str, body: dict[str, Any],
                allow_private: bool, keys: str, now: datetime) -> tuple[AlertRule, str | None]:
    """A new rule, and its webhook secret (shown once; stored sealed with `keys`) when it has a webhook."""
    _threshold_problem(body["metric"], body["threshold"])
    if body.get("webhook_url"):
        _webhook_problem(body["webhook_url"], allow_private)
    rule_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32) if body.get("webhook_url") else None
    rule = AlertRule(**body, id=rule_id, created_by=actor.name, created_at=now, updated_at=now,
                     webhook_secret=secret and webhook_secrets.seal(secret, keys=keys, rule_id=rule_id))
    session.add(rule)
    session.flush()
    audit.record_change(session, actor=actor, action="alert_rule.created", resource_type="alert_rule",
                        resource_id=rule.id, request_id=request_id, before=None, after=_summary(rule))
    return rule, secret


def _summary(rule: AlertRule) -> dict[str, Any]:
    return {"name": rule.name, "model_id": rule.model_id, "metric": rule.metric, "threshold": rule.threshold,
            "window_minutes": rule.window_minutes, "enabled": rule.enabled, "webhook_url": rule.webhook_url}


def get_rule(session: Session, rule_id: uuid.UUID, *, for_update: bool = False) -> AlertRule:
    rule = session.get(AlertRule, rule_id, with_for_update=for_update)
    if rule is None:
        raise NotFound(f"No alert rule has the id {rule_id}.")
    return rule


def list_rules(session: Session, *, limit: int, cursor: str | None, sort: str | None,
               model_id: uuid.UUID | None = None) -> Page:
    statement = sa.select(AlertRule)
    if model_id is not None:
        statement = statement.where(sa.or_(AlertRule.model_id == model_id, AlertRule.model_id.is_(None)))
    return paginate(session, statement, sorting=RULE_SORTING, limit=limit, cursor=cursor, sort=sort)


def update_rule(session: Session, *, actor: Actor, request_id: str, rule_id: uuid.UUID, changes: dict[str, Any],
                allow_private: bool, keys: str, now: datetime) -> tuple[AlertRule, str | None]:
    """The rule changed; a new secret (shown once) whenever its webhook URL changes, so that a new
    receiver never holds the old one's key. Disabling a rule resolves its open alerts."""
    rule = get_rule(session, rule_id, for_update=True)
    before = _summary(rule)
    secret = None
    if "threshold" in changes:
        _threshold_problem(rule.metric, changes["threshold"])
    if changes.get("webhook_url"):
        _webhook_problem(changes["webhook_url"], allow_private)
        if changes["webhook_url"] != rule.webhook_url:
            secret = secrets.token_urlsafe(32)
            rule.webhook_secret = webhook_secrets.seal(secret, keys=keys, rule_id=rule.id)
    elif "webhook_url" in changes:
        rule.webhook_secret = None
    if changes.get("enabled") is False and rule.enabled:
        _resolve_open(session, rule, now)
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.updated_at = now
    audit.record_change(session, actor=actor, action="alert_rule.updated", resource_type="alert_rule",
                        resource_id=rule.id, request_id=request_id, before=before, after=_summary(rule))
    return rule, secret


def delete_rule(session: Session, *, actor: Actor, request_id: str, rule_id: uuid.UUID) -> None:
    """Delete the rule with its alerts (their history goes with it: disable a rule to keep it)."""
    rule = get_rule(session, rule_id, for_update=True)
    audit.record_change(session, actor=actor, action="alert_rule.deleted", resource_type="alert_rule",
                        resource_id=rule.id, request_id=request_id, before=_summary(rule), after=None)
    _delete(session, rule)


def retire_rule(session: Session, rule: AlertRule, now: datetime) -> None:
    """A rule that no longer applies (its deployment's threshold is gone): its open alerts resolve, as
    disabling it would resolve them, and it goes with its alerts."""
    _resolve_open(session, rule, now)
    _delete(session, rule)


def _resolve_open(session: Session, rule: AlertRule, now: datetime) -> None:
    for alert in session.scalars(sa.select(Alert).where(Alert.rule_id == rule.id, Alert.state.in_(OPEN))):
        alert.state, alert.resolved_at = RESOLVED, now
        emit(session, "alert.resolved", payload(rule, alert), producer=PRODUCER)


def _delete(session: Session, rule: AlertRule) -> None:
    session.execute(sa.delete(WebhookDelivery).where(
        WebhookDelivery.alert_id.in_(sa.select(Alert.id).where(Alert.rule_id == rule.id))))
    session.execute(sa.delete(Alert).where(Alert.rule_id == rule.id))
    session.delete(rule)


def list_alerts(session: Session, *, limit: int, cursor: str | None, sort: str | None, state: str | None = None,
                model_id: uuid.UUID | None = None, rule_id: uuid.UUID | None = None) -> Page:
    statement = sa.select(Alert)
    if state is not None:
        statement = statement.where(Alert.state == state)
    if model_id is not None:
        statement = statement.where(Alert.model_id == model_id)
    if rule_id is not None:
        statement = statement.where(Alert.rule_id == rule_id)
    return paginate(session, statement, sorting=ALERT_SORTING, limit=limit, cursor=cursor, sort=sort)


def get_alert(session: Session, alert_id: uuid.UUID, *, for_update: bool = False) -> Alert:
    alert = session.get(Alert, alert_id, with_for_update=for_update)
    if alert is None:
        raise NotFound(f"No alert has the id {alert_id}.")
    return alert


def deliveries(session: Session, alert_id: uuid.UUID) -> list[WebhookDelivery]:
    return list(session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.alert_id == alert_id)
                                .order_by(WebhookDelivery.attempted_at, WebhookDelivery.attempt)))


def acknowledge(session: Session, *, actor: Actor, request_id: str, alert_id: uuid.UUID, now: datetime) -> Alert:
    """Someone is on it: the alert stays open until its condition clears, but is no longer `firing`."""
    alert = get_alert(session, alert_id, for_update=True)
    if alert.state == RESOLVED:
        raise Conflict("The alert is resolved already: there is nothing to acknowledge.")
    if alert.state == FIRING:
        alert.state, alert.acknowledged_at, alert.acknowledged_by = ACKNOWLEDGED, now, actor.name
        audit.record_change(session, actor=actor, action="alert.acknowledged", resource_type="alert",
                            resource_id=alert.id, request_id=request_id, before={"state": FIRING},
                            after={"state": ACKNOWLEDGED})
    return alert


def evaluate(session: Session, *, queue: str, drift_hours: int, now: datetime) -> dict[str, int]:
    """Every enabled rule against every model it watches: fire, keep, or resolve alerts. A rule whose
    evaluation fails is logged and skipped (its savepoint rolled back); the others still count."""
    counts = {"rules": 0, "fired": 0, "resolved": 0, "failed": 0}
    # On SQLite this takes the write lock first: a transaction that read, then writes after another
    # process (the relay, a consumer) wrote, is refused at once ("database is locked"), never waits.
    deleted = set(session.scalars(select_for_update(session, sa.select(DeletedModel.model_id))))
    if deleted:
        counts["resolved"] += _retire_deleted_models(session, queue=queue, now=now)
    rules = session.scalars(select_for_update(session, sa.select(AlertRule).where(AlertRule.enabled.is_(True))
                                              .order_by(AlertRule.id))).all()
    for rule in rules:
        counts["rules"] += 1
        try:
            with session.begin_nested():
                fired, resolved = _evaluate(session, rule, queue=queue, drift_hours=drift_hours, deleted=deleted,
                                            now=now)
        except Exception:
            log.exception("alert rule %s (%s) could not be evaluated", rule.id, rule.name)
            counts["failed"] += 1
            continue
        counts["fired"] += fired
        counts["resolved"] += resolved
    return counts


def _retire_deleted_models(session: Session, *, queue: str, now: datetime) -> int:
    """The open alerts of models the registry deleted resolve, announced as any resolution is; the rules
    their deployments made go, and rules of their own are disabled: they watch nothing any more."""
    gone = sa.select(DeletedModel.model_id)
    resolved = 0
    for alert in session.scalars(sa.select(Alert).where(Alert.model_id.in_(gone), Alert.state.in_(OPEN))).all():
        alert.state, alert.resolved_at = RESOLVED, now
        _announce(session, session.get(AlertRule, alert.rule_id), alert, "alert.resolved", queue)
        resolved += 1
    for rule in session.scalars(sa.select(AlertRule).where(AlertRule.model_id.in_(gone), sa.or_(
            AlertRule.deployment_id.is_not(None), AlertRule.enabled.is_(True)))).all():
        if rule.deployment_id is not None:
            _delete(session, rule)
        else:
            rule.enabled, rule.updated_at = False, now
    return resolved


def _evaluate(session: Session, rule: AlertRule, *, queue: str, drift_hours: int, deleted: set[uuid.UUID],
              now: datetime) -> tuple[int, int]:
    fired = resolved = 0
    values = _values(session, rule, drift_hours, now)
    open_alerts = {alert.model_id: alert for alert in session.scalars(sa.select(Alert).where(
        Alert.rule_id == rule.id, Alert.state.in_(OPEN)))}
    for model_id, value in values.items():
        if model_id in deleted:
            continue  # its predictions and reports outlive it for a while: they alert nobody
        if not math.isfinite(value):
            continue  # no number to compare: the alert stays as it is
        alert = open_alerts.get(model_id)
        if value > rule.threshold:
            if alert is None:
                alert = Alert(rule_id=rule.id, model_id=model_id, metric=rule.metric, state=FIRING, value=value,
                              threshold=rule.threshold, fired_at=now)
                session.add(alert)
                session.flush()
                _announce(session, rule, alert, "alert.fired", queue)
                fired += 1
            else:
                alert.value = value
        elif alert is not None:
            alert.state, alert.value, alert.resolved_at = RESOLVED, value, now
            _announce(session, rule, alert, "alert.resolved", queue)
            resolved += 1
    return fired, resolved


def payload(rule: AlertRule, alert: Alert) -> dict[str, Any]:
    """What alert.fired / alert.resolved and the webhook body say about the alert."""
    return {"alert_id": alert.id, "rule_id": rule.id, "rule_name": rule.name, "model_id": alert.model_id,
            "metric": alert.metric, "value": alert.value, "threshold": alert.threshold, "state": alert.state,
            "fired_at": alert.fired_at, "resolved_at": alert.resolved_at}


def _announce(session: Session, rule: AlertRule, alert: Alert, event: str, queue: str) -> None:
    said = payload(rule, alert)
    emit(session, event, said, producer=PRODUCER)
    if rule.webhook_url:
        # The body as of this change, the same on every attempt, whatever the alert does meanwhile.
        body = json.dumps({"event": event, "alert": said}, sort_keys=True,
                          default=lambda value: value.isoformat() if isinstance(value, datetime) else str(value))
        enqueue_after_commit(session, DELIVER, str(alert.id), event, body, 1, queue=queue)


def _values(session: Session, rule: AlertRule, drift_hours: int, now: datetime) -> dict[uuid.UUID, float]:
    """The rule's metric per model it watches, for the models that have one now."""
    if rule.metric in ("drift_score", "performance_degradation"):
        query = standard_reports(drift_hours).with_only_columns(
            DriftReport.model_id, DriftReport.version, DriftReport.overall_drift_score, DriftReport.report).where(
            DriftReport.computed_at >= now - REPORT_AGE).order_by(DriftReport.computed_at.desc())
        if rule.model_id is not None:
            query = query.where(DriftReport.model_id == rule.model_id)
        # Each version's latest report decides, even when it has no value (too few actuals yet); a model
        # serving two versions (a canary) has the worse of them.
        latest: dict[tuple[uuid.UUID, int], float | None] = {}
        for model_id, version, score, report in session.execute(query):
            if (model_id, version) not in latest:
                latest[model_id, version] = score if rule.metric == "drift_score" \
                    else degradation(report.get("concept_drift"))
        values: dict[uuid.UUID, float] = {}
        for (model_id, _), value in latest.items():
            if value is not None:
                values[model_id] = max(value, values.get(model_id, value))
        return values
    if rule.metric in USAGE_METRICS:
        # The worst replica decides: one replica out of memory is an outage in the making, whatever the others do.
        figure = getattr(ReplicaUsage, rule.metric)
        query = sa.select(ReplicaUsage.model_id, sa.func.max(figure)).where(
            figure.is_not(None), ReplicaUsage.reported_at >= now - timedelta(minutes=rule.window_minutes)
        ).group_by(ReplicaUsage.model_id)
        if rule.model_id is not None:
            query = query.where(ReplicaUsage.model_id == rule.model_id)
        return {model_id: value for model_id, value in session.execute(query)}
    query = sa.select(Prediction.model_id, Prediction.error, Prediction.latency_ms).where(
        Prediction.predicted_at >= now - timedelta(minutes=rule.window_minutes), Prediction.predicted_at <= now)
    if rule.model_id is not None:
        query = query.where(Prediction.model_id == rule.model_id)
    rows_by_model: dict[uuid.UUID, list] = {}
    for row in session.execute(query):
        rows_by_model.setdefault(row.model_id, []).append(row)
    values = {}
    for model_id, rows in rows_by_model.items():
        if len(rows) < MIN_PREDICTIONS:
            continue
        if rule.metric == "error_rate":
            values[model_id] = 100 * sum(row.error is not None for row in rows) / len(rows)
        else:
            latency = scores.percentile([row.latency_ms for row in rows if row.latency_ms is not None], 95)
            if latency is not None:
                values[model_id] = latency
    return values


def degradation(concept: dict[str, Any] | None) -> float | None:
    """How much worse, in percent of the baseline, the live metric of a concept drift result is; None
    before it has a verdict (too few actuals) or without a baseline."""
    if not concept or concept.get("p_value") is None or not concept.get("baseline"):
        return None
    change = (concept["baseline"] - concept["current"]) if concept["metric"] == "accuracy" \
        else (concept["current"] - concept["baseline"])
    return 100 * change / concept["baseline"]
