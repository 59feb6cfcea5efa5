"""The dashboards: server-rendered pages under /monitoring/ for the platform's users, signed in with their password.

Models (each one's performance and latency per hour, anomalies marked), drift (each feature's reference against
current histogram), deployments (a model's deployments as a timeline of their transitions and rollbacks), A/B
tests (each metric's interval, and its always-valid p-value look by look) and alerts, which an ml_engineer
acknowledges. A page embeds its figures as JSON (`<script type="application/json" id="figures">`), the very
figures the API answers, and static/dashboards.js draws them with uPlot (vendored, MIT): nothing is fetched from
elsewhere. What each page reads is in dashboard_data.py; signing in and the forms' guards in dashboard_session.py.
No page ever shows a stack trace: an error is a page saying what went wrong, and an unknown id a 404 page.
"""

from __future__ import annotations

import logging
import uuid

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from services.monitoring import alerts, dashboard_data as data, dashboard_session as sessions
from services.monitoring.alerts import ACKNOWLEDGED, FIRING, RESOLVED
from shared.db import utcnow
from shared.errors import DomainError, Forbidden, Unauthorized, ValidationFailed
from shared.request_context import db_session, request_id
from shared.web import accepts

log = logging.getLogger(__name__)
FORM = "application/x-www-form-urlencoded"
# Scripts and styles from this site only: the figures are JSON the page's script reads, never script themselves.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MAX_DAYS = 31

dashboards = Blueprint("dashboards", __name__, url_prefix="/monitoring", template_folder="templates",
                       static_folder="static", static_url_path="/static")


@dashboards.context_processor
def _common() -> dict:
    return {"csrf_token": sessions.csrf_token, "actor": g.get("actor")}


@dashboards.after_request
def _finish(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    return sessions.save(response)


def _page(template: str, status: int = 200, **context) -> tuple[str, int]:
    return render_template(f"dashboards/{template}", **context), status


@dashboards.errorhandler(Exception)
def _error(exc: Exception):
    if isinstance(exc, Unauthorized):  # the session's token expired or was withdrawn while the page was asked
        sessions.sign_out()
        return redirect(url_for("dashboards.login", next=request.path))
    if isinstance(exc, DomainError):
        status, title, detail = exc.status, exc.title, exc.detail
    elif isinstance(exc, HTTPException):
        status, title, detail = exc.code or 500, exc.name, exc.description
    else:
        log.exception("dashboard page %s failed (request %s)", request.path, request_id())
        status, title = 500, "Something went wrong"
        detail = f"The page could not be shown. The error is logged under request id {request_id()}."
    return _page("error.html", status, title=title, detail=detail)


def _cursor() -> str | None:
    return request.args.get("cursor") or None


@dashboards.get("/")
def index():
    return redirect(url_for("dashboards.models"))


@dashboards.route("/login", methods=["GET", "POST"])
@accepts(FORM)
def login():
    target = sessions.local_path(request.values.get("next")) or url_for("dashboards.models")
    if request.method == "GET":
        return _page("login.html", next=target, failed=None)
    sessions.check_form()
    try:
        sessions.sign_in(request.form.get("username", "").strip(), request.form.get("password", ""))
    except (Unauthorized, sessions.TooManySignIns) as exc:
        return _page("login.html", exc.status, next=target, failed=exc.detail)
    return redirect(target, 303)


@dashboards.post("/logout")
@accepts(FORM)
def logout():
    sessions.check_form()
    sessions.sign_out()
    return redirect(url_for("dashboards.login"), 303)


@dashboards.get("/models")
@sessions.signed_in
def models():
    return _page("models.html", page=data.models(_cursor()))


def _days() -> int:
    raw = request.args.get("days", str(data.RECENT_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise ValidationFailed(f"days must be a whole number from 1 to {MAX_DAYS}.")
    return int(raw)


@dashboards.get("/models/<model:model_ref>")
@sessions.signed_in
def model(model_ref: str):
    return _page("model.html", figures=data.model(model_ref, _days()))


@dashboards.get("/drift")
@sessions.signed_in
def drift():
    return _page("drift.html", page=data.drift(_cursor(), request.args.get("model") or None))


@dashboards.get("/deployments")
@sessions.signed_in
def deployments():
    return _page("deployments.html", page=data.deployments(_cursor()))


@dashboards.get("/deployments/<uuid:deployment_id>")
@sessions.signed_in
def deployment(deployment_id: uuid.UUID):
    return _page("deployment.html", figures=data.deployment(deployment_id))


@dashboards.get("/ab-tests")
@sessions.signed_in
def ab_tests():
    return _page("ab_tests.html", page=data.ab_tests(_cursor()))


@dashboards.get("/ab-tests/<uuid:test_id>")
@sessions.signed_in
def ab_test(test_id: uuid.UUID):
    return _page("ab_test.html", figures=data.ab_test(test_id))


@dashboards.get("/alerts")
@sessions.signed_in
def alert_list():
    state = request.args.get("state") or None
    if state not in (None, FIRING, ACKNOWLEDGED, RESOLVED):
        raise ValidationFailed(f"state must be {FIRING}, {ACKNOWLEDGED} or {RESOLVED}.")
    return _page("alerts.html", page=data.alert_page(_cursor(), state), state=state,
                 may_acknowledge=sessions.actor().has_role("ml_engineer"))


@dashboards.post("/alerts/<uuid:alert_id>/acknowledge")
@accepts(FORM)
@sessions.signed_in
def acknowledge(alert_id: uuid.UUID):
    sessions.check_form()
    if not sessions.actor().has_role("ml_engineer"):
        raise Forbidden(f"Acknowledging an alert needs the ml_engineer role; you have {sessions.actor().role}.")
    alerts.acknowledge(db_session(), actor=sessions.actor(), request_id=request_id(), alert_id=alert_id, now=utcnow())
    return redirect(url_for("dashboards.alert_list"), 303)
