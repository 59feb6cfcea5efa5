"""HTTP views of alerting: rules (ml_engineer writes, anyone signed in reads) and the alerts they raise."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

from marshmallow import RAISE

from services.monitoring import alerts
from services.monitoring.schemas import (
    AlertListArgs, AlertRuleCreateSchema, AlertRuleListArgs, AlertRulePatchSchema, AlertRuleSchema, AlertSchema,
)
from shared.auth import current_actor, requires
from shared.db import utcnow
from shared.errors import NotFound, ValidationFailed
from shared.pagination import page_schema
from shared.registry_client import RegistryClient
from shared.web import Blueprint, MethodView, db_session, request_id, runtime

rules_blp = Blueprint("alert_rules", __name__, url_prefix="/api/v1/alert-rules",
                      description="When to alert, and where to send it")
alerts_blp = Blueprint("alerts", __name__, url_prefix="/api/v1/alerts", description="Alerts the rules raised")


def _model_id(ref: str) -> uuid.UUID:
    try:
        return uuid.UUID(RegistryClient.for_request(runtime().settings.registry_url).model(ref)["id"])
    except NotFound:
        raise ValidationFailed(f"No model has the id or name {ref!r}.", errors={"model_id": ["No such model."]}) from None


def _shown(rule, secret: str | None) -> dict[str, Any]:
    shown = {column: getattr(rule, column) for column in AlertRuleSchema._declared_fields if hasattr(rule, column)}
    shown.pop("webhook_secret")
    if shown["webhook_url"] and not current_actor().has_role("ml_engineer"):
        # A webhook URL's path is often its credential (Slack's, Teams'): its origin is enough to read.
        parts = urllib.parse.urlsplit(shown["webhook_url"])
        shown["webhook_url"] = f"{parts.scheme}://{parts.netloc}/..."
    return {**shown, "webhook_secret": secret} if secret else shown


@rules_blp.route("")
class AlertRules(MethodView):
    @requires("viewer")
    @rules_blp.arguments(AlertRuleListArgs, location="query", unknown=RAISE)
    @rules_blp.response(200, page_schema(AlertRuleSchema))
    def get(self, args):
        """The rules, oldest first (the brief's defaults for every model come first)."""
        page = alerts.list_rules(db_session(), **args)
        return {"items": [_shown(rule, None) for rule in page.items], "next_cursor": page.next_cursor}

    @requires("ml_engineer")
    @rules_blp.arguments(AlertRuleCreateSchema)
    @rules_blp.response(201, AlertRuleSchema)
    def post(self, body):
        """A rule: `metric` above `threshold`, for one model or every one; with a webhook, its secret is
        answered this once."""
        if body["model_id"] is not None:
            body["model_id"] = _model_id(body["model_id"])
        settings = runtime().settings
        rule, secret = alerts.create_rule(db_session(), actor=current_actor(), request_id=request_id(), body=body,
                                          allow_private=settings.webhook_allow_private, keys=settings.artifact_keys,
                                          now=utcnow())
        return _shown(rule, secret)


@rules_blp.route("/<uuid:rule_id>")
class AlertRuleItem(MethodView):
    @requires("viewer")
    @rules_blp.response(200, AlertRuleSchema)
    def get(self, rule_id: uuid.UUID):
        return _shown(alerts.get_rule(db_session(), rule_id), None)

    @requires("ml_engineer")
    @rules_blp.arguments(AlertRulePatchSchema)
    @rules_blp.response(200, AlertRuleSchema)
    def patch(self, changes, rule_id: uuid.UUID):
        """Change a rule's name, threshold, window, webhook or whether it is enabled."""
        settings = runtime().settings
        rule, secret = alerts.update_rule(db_session(), actor=current_actor(), request_id=request_id(),
                                          rule_id=rule_id, changes=changes, allow_private=settings.webhook_allow_private,
                                          keys=settings.artifact_keys, now=utcnow())
        return _shown(rule, secret)

    @requires("ml_engineer")
    @rules_blp.response(204)
    def delete(self, rule_id: uuid.UUID):
        """Delete a rule with its alerts (disable it to keep them)."""
        alerts.delete_rule(db_session(), actor=current_actor(), request_id=request_id(), rule_id=rule_id)


@alerts_blp.route("")
class Alerts(MethodView):
    @requires("viewer")
    @alerts_blp.arguments(AlertListArgs, location="query", unknown=RAISE)
    @alerts_blp.response(200, page_schema(AlertSchema))
    def get(self, args):
        """Alerts, newest first; filter by state (firing, acknowledged, resolved), model or rule."""
        return alerts.list_alerts(db_session(), **args)


@alerts_blp.route("/<uuid:alert_id>")
class AlertItem(MethodView):
    @requires("viewer")
    @alerts_blp.response(200, AlertSchema)
    def get(self, alert_id: uuid.UUID):
        """One alert with its webhook delivery log."""
        session = db_session()
        alert = alerts.get_alert(session, alert_id)
        return {**{column: getattr(alert, column) for column in AlertSchema._declared_fields if hasattr(alert, column)},
                "deliveries": alerts.deliveries(session, alert_id)}


@alerts_blp.route("/<uuid:alert_id>/acknowledge")
class AlertAcknowledge(MethodView):
    @requires("ml_engineer")
    @alerts_blp.response(200, AlertSchema)
    @alerts_blp.alt_response(409, description="The alert is resolved.")
    def post(self, alert_id: uuid.UUID):
        """Someone is on it: the alert stays open, acknowledged, until its condition clears."""
        return alerts.acknowledge(db_session(), actor=current_actor(), request_id=request_id(), alert_id=alert_id,
                                  now=utcnow())
