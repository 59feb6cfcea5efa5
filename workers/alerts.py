"""Alerting's tasks, on the default pool: beat's evaluation of every rule, and the webhook deliveries it
leaves behind.

A delivery is one attempt (services/monitoring/webhooks.py), logged in webhook_deliveries; a failed one
that may succeed later is sent again backoff(n) seconds after attempt n, up to MAX_ATTEMPTS. The body
and its event id are the same on every attempt, so a receiver can drop repeats.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from celery import shared_task

from services.monitoring import alerts, webhook_secrets, webhooks
from services.monitoring.service import EVALUATE_ALERTS
from services.monitoring.tables import AlertRule, WebhookDelivery
from shared.db import utcnow
from shared.tasks import enqueue_after_commit
from workers.database_task import DatabaseTask

log = logging.getLogger(__name__)


@shared_task(bind=True, base=DatabaseTask, name=EVALUATE_ALERTS)
def evaluate(self: DatabaseTask) -> dict[str, int]:
    """Beat: every enabled rule against every model it watches."""
    with self.transaction() as session:
        outcome = alerts.evaluate(session, queue=self.settings.task_queue("default"),
                                  drift_hours=self.settings.drift_window_hours, now=utcnow())
    if outcome["fired"] or outcome["resolved"]:
        log.info("alerts: %d fired, %d resolved", outcome["fired"], outcome["resolved"])
    return outcome


@shared_task(bind=True, base=DatabaseTask, name=alerts.DELIVER)
def deliver(self: DatabaseTask, alert_id: str, event: str, body: str, attempt: int) -> bool:
    """Send the alert's change (`body`, as it was announced) to its rule's webhook once; log it, and
    schedule the next attempt."""
    with self.transaction() as session:
        alert = session.get(alerts.Alert, uuid.UUID(alert_id))
        rule = session.get(AlertRule, alert.rule_id) if alert is not None else None
        if rule is None or not rule.webhook_url:
            return False  # deleted, or its webhook removed, since
        url = rule.webhook_url
        try:
            secret = webhook_secrets.unseal(rule.webhook_secret, keys=self.settings.artifact_keys, rule_id=rule.id)
        except webhook_secrets.SecretUnreadable as exc:  # no retry can mend it: logged, given up
            secret, unreadable = None, str(exc)
    if secret is None:
        sent = webhooks.Delivery(delivered=False, status_code=None, error=unreadable, duration_ms=0.0,
                                 response_excerpt=None, retryable=False)
    else:
        # Outside any transaction: a slow receiver holds no row and no connection.
        sent = webhooks.deliver(url, body.encode(), secret=secret.encode(), event_id=f"{alert_id}:{event}",
                                allow_private=self.settings.webhook_allow_private, now=time.time())
    again = not sent.delivered and sent.retryable and attempt < webhooks.MAX_ATTEMPTS
    wait = webhooks.backoff(attempt) if again else None
    with self.transaction() as session:
        now = utcnow()
        session.add(WebhookDelivery(alert_id=uuid.UUID(alert_id), event=event, attempt=attempt,
                                    delivered=sent.delivered, status_code=sent.status_code, error=sent.error,
                                    response_excerpt=sent.response_excerpt, duration_ms=sent.duration_ms,
                                    attempted_at=now, next_attempt_at=now + timedelta(seconds=wait) if again else None))
        if again:
            enqueue_after_commit(session, alerts.DELIVER, alert_id, event, body, attempt + 1,
                                 queue=self.settings.task_queue("default"), countdown=wait)
    if not sent.delivered:
        # The host only: a webhook URL's path is often its credential (Slack's, Teams').
        log.warning("alert %s: %s to %s failed (attempt %d%s): %s", alert_id, event, urlsplit(url).hostname, attempt,
                    f", again in {wait:.0f} s" if again else ", given up", sent.error)
    return sent.delivered
