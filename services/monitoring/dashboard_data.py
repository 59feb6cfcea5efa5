"""What each dashboard shows, read as the signed-in user: monitoring's own figures through the functions its API
answers with (so a page and the API never disagree), the registry's models and the deployment service's
deployments and tests through their APIs (a service never reads another's tables).

Every list is a page of PAGE_SIZE, and a page's figures are one grouped query over its models' rollups
(performance_hours, detected anomalies, open alerts, the latest drift report's score): what a page costs does
not grow with the number of models. A list counts the hours beat has tallied (rollups.py: every minute), so it
may be a minute behind; a model's page reads its hourly tallies and tallies the stale ones, as GET .../performance
does.
"""

from __future__ import annotations

import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from services.monitoring import alerts, model_anomalies, performance
from services.monitoring.dashboard_session import platform_headers
from services.monitoring.tables import ABTestLook, Alert, DetectedAnomaly, DriftReport, PerformanceHour
from shared.db import utcnow
from shared.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from shared.registry_client import RegistryClient
from shared.request_context import db_session, runtime
from shared.service_client import ServiceUnavailable, fetcher

PAGE_SIZE = 50
# The days a model's list and its page look back over; the page's charts are per hour.
RECENT_DAYS = 7
# The most looks of an A/B test whose sequential p-values the path shows (one every 5 minutes: a month is ~8,600):
# evenly spaced over the whole test, the latest always among them.
PATH_LOOKS = 300


def ask(base_url: str, path: str) -> Any:
    """Another service's answer to GET `path`, asked as the signed-in user; its refusals as ours."""
    status, body = fetcher(base_url, current_app._get_current_object())(path, platform_headers())
    detail = (body or {}).get("detail") if isinstance(body, dict) else None
    if status == 200:
        return body
    if status == 404:
        raise NotFound(detail or f"Nothing is at {path}.")
    if status == 401:
        raise Unauthorized(detail or "The session has expired.")
    if status == 403:
        raise Forbidden(detail or "Your role may not see this.")
    if status in (400, 422):
        raise ValidationFailed(detail or "The page's address is not valid.")
    raise ServiceUnavailable(f"A service answered {status} for {path}.")


def _query(**params: Any) -> str:
    return urllib.parse.urlencode({name: value for name, value in params.items() if value is not None})


def _registry_url() -> str:
    return runtime().settings.registry_url


def _deployment_url() -> str:
    return runtime().settings.deployment_url


def _ids(items: list[dict[str, Any]], key: str = "id") -> list[uuid.UUID]:
    return [uuid.UUID(item[key]) for item in items]


def models(cursor: str | None) -> dict[str, Any]:
    """A page of models by name, each with its last RECENT_DAYS' predictions and errors, anomalies and open alerts."""
    page = ask(_registry_url(), f"/api/v1/models?{_query(limit=PAGE_SIZE, sort='name', cursor=cursor)}")
    ids, since = _ids(page["items"]), utcnow() - timedelta(days=RECENT_DAYS)
    session = db_session()
    served = {row.model_id: row for row in session.execute(
        sa.select(PerformanceHour.model_id, sa.func.sum(PerformanceHour.predictions).label("predictions"),
                  sa.func.sum(PerformanceHour.errors).label("errors"))
        .where(PerformanceHour.model_id.in_(ids), PerformanceHour.hour >= since).group_by(PerformanceHour.model_id))}
    anomalies = dict(session.execute(
        sa.select(DetectedAnomaly.model_id, sa.func.count()).where(DetectedAnomaly.model_id.in_(ids),
                                                                   DetectedAnomaly.bucket_start >= since)
        .group_by(DetectedAnomaly.model_id)).all())
    firing = dict(session.execute(
        sa.select(Alert.model_id, sa.func.count()).where(Alert.model_id.in_(ids), Alert.state != alerts.RESOLVED)
        .group_by(Alert.model_id)).all())
    rows = []
    for model, model_id in zip(page["items"], ids):
        found = served.get(model_id)
        predictions = int(found.predictions) if found else 0
        rows.append({"id": model["id"], "name": model["name"], "type": model["type"], "status": model["status"],
                     "latest_version": model["latest_version"], "predictions": predictions,
                     "error_rate": int(found.errors) / predictions if predictions else None,
                     "anomalies": anomalies.get(model_id, 0), "open_alerts": firing.get(model_id, 0)})
    return {"items": rows, "next_cursor": page["next_cursor"], "days": RECENT_DAYS}


@dataclass
class _Known:
    """A registry that knows one model already: the page asked the registry once, the figures need not again."""

    found: dict[str, Any]

    def model(self, _ref: str) -> dict[str, Any]:
        return self.found


def model(model_ref: str, days: int) -> dict[str, Any]:
    """A model, its performance and operating metrics per hour over `days`, and their anomalies: exactly what
    GET .../performance?days=&granularity=hour and GET .../anomalies?days= answer."""
    found = RegistryClient(fetcher(_registry_url(), current_app._get_current_object()), platform_headers()) \
        .model(model_ref)
    session, now, registry = db_session(), utcnow(), _Known(found)
    return {
        "model": {key: found[key] for key in ("id", "name", "type", "status", "latest_version")},
        "performance": performance.model_performance(session=session, registry=registry, model_ref=found["id"],
                                                     days=days, version=None, granularity="hour", now=now),
        "anomalies": model_anomalies.model_anomalies(session=session, registry=registry, model_ref=found["id"],
                                                     days=days, granularity="hour", version=None,
                                                     threshold=model_anomalies.THRESHOLD, now=now),
    }


def _standard(query: sa.Select) -> sa.Select:
    # The standard report (the sweep's: the last drift_window_hours, no correction), which GET .../drift answers.
    return query.where(DriftReport.window_hours == runtime().settings.drift_window_hours,
                       DriftReport.window_predictions.is_(None), DriftReport.correction == "none")


def drift(cursor: str | None, model_ref: str | None) -> dict[str, Any]:
    """A page of models with their latest standard drift report's score, and one model's report in full."""
    page = ask(_registry_url(), f"/api/v1/models?{_query(limit=PAGE_SIZE, sort='name', cursor=cursor)}")
    ids, session = _ids(page["items"]), db_session()
    latest = _standard(sa.select(DriftReport.model_id, sa.func.max(DriftReport.computed_at).label("at"))
                       .where(DriftReport.model_id.in_(ids))).group_by(DriftReport.model_id).subquery()
    scores = {row.model_id: row for row in session.execute(
        _standard(sa.select(DriftReport.model_id, DriftReport.version, DriftReport.overall_drift_score,
                            DriftReport.severity, DriftReport.computed_at)
                  .join(latest, sa.and_(latest.c.model_id == DriftReport.model_id,
                                        latest.c.at == DriftReport.computed_at))))}
    rows = []
    for item, model_id in zip(page["items"], ids):
        report = scores.get(model_id)
        rows.append({"id": item["id"], "name": item["name"], "version": report.version if report else None,
                     "score": report.overall_drift_score if report else None,
                     "severity": report.severity if report else None,
                     "computed_at": report.computed_at.isoformat() if report else None})
    chosen = None
    if model_ref:
        found = RegistryClient(fetcher(_registry_url(), current_app._get_current_object()), platform_headers()) \
            .model(model_ref)
        report = session.scalars(_standard(sa.select(DriftReport).where(DriftReport.model_id == uuid.UUID(found["id"])))
                                 .order_by(DriftReport.computed_at.desc()).limit(1)).first()
        chosen = {"model": {"id": found["id"], "name": found["name"]},
                  "report": report.report if report else None}
    return {"items": rows, "next_cursor": page["next_cursor"], "chosen": chosen}


def deployments(cursor: str | None) -> dict[str, Any]:
    """A page of endpoints with their live and candidate deployments."""
    return ask(_deployment_url(), f"/api/v1/endpoints?{_query(limit=PAGE_SIZE, cursor=cursor)}")


def deployment(deployment_id: uuid.UUID) -> dict[str, Any]:
    """A deployment, and its model's latest deployments with every transition: the timeline."""
    found = ask(_deployment_url(), f"/api/v1/deployments/{deployment_id}")
    timeline = ask(_deployment_url(), f"/api/v1/models/{found['model_id']}/deployments?limit={PAGE_SIZE}")
    return {"deployment": found, "timeline": timeline["items"]}


def ab_tests(cursor: str | None) -> dict[str, Any]:
    return ask(_deployment_url(), f"/api/v1/ab-tests?{_query(limit=PAGE_SIZE, cursor=cursor)}")


def ab_test(test_id: uuid.UUID) -> dict[str, Any]:
    """A test, its latest results (GET .../results' answer; None before it started), and each metric's
    always-valid p-value look by look: the path that crosses alpha when the test decides."""
    from services.monitoring import ab_analysis  # scipy, for this page only

    test = ask(_deployment_url(), f"/api/v1/ab-tests/{test_id}")
    session = db_session()
    try:
        results = ab_analysis.latest_results(session=session, test_id=test_id, now=utcnow())
    except NotFound:
        results = None
    every = session.scalars(sa.select(ABTestLook.id).where(ABTestLook.ab_test_id == test_id)
                            .order_by(ABTestLook.looked_at)).all()
    # Only the chosen looks' results are read: each is a few kB.
    chosen = set(every[::-(-len(every) // PATH_LOOKS)] + every[-1:]) if every else set()
    looks = session.scalars(sa.select(ABTestLook).where(ABTestLook.id.in_(chosen)).order_by(ABTestLook.looked_at))
    path = [{"looked_at": look.results["looked_at"],
             "p_values": {f"{entry['role']}:{entry['name']}": entry["p_value_sequential"]
                          for entry in look.results["metrics"]}} for look in looks]
    return {"test": test, "results": results, "path": path}


def alert_page(cursor: str | None, state: str | None) -> dict[str, Any]:
    page = alerts.list_alerts(db_session(), limit=PAGE_SIZE, cursor=cursor, sort=None, state=state)
    return {"items": page.items, "next_cursor": page.next_cursor}
