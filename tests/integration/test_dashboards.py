"""The dashboards under /monitoring/ as a browser meets them: sign-in with a platform user's password, the session
cookie, CSRF and Origin checks on every form, read-only viewers, error pages, and figures equal to the API's."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.monitoring import rollups
from services.monitoring.tables import VersionBaseline
from tests.support.auth import PASSWORD, make_user
from tests.support.deployments import model_with_versions

pytestmark = pytest.mark.integration

PREDICTIONS = "/api/v1/monitoring/predictions"
PAGES = ("/monitoring/models", "/monitoring/drift", "/monitoring/deployments", "/monitoring/ab-tests",
         "/monitoring/alerts")


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _figures(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="figures">(.*?)</script>', html, re.S).group(1))


def sign_in(client, username: str, password: str = PASSWORD, **headers):
    csrf = _csrf(client.get("/monitoring/login").get_data(as_text=True))
    return client.post("/monitoring/login", data={"username": username, "password": password, "csrf_token": csrf,
                                                  "next": "/monitoring/models"}, headers=headers)


@pytest.fixture
def engineer(app):
    return make_user(app, "ml_engineer", username="erin")


@pytest.fixture
def browser(app, engineer):
    """A test client signed in as an ml_engineer."""
    client = app.test_client()
    assert sign_in(client, "erin").status_code == 303
    return client


def test_signed_out_pages_lead_to_sign_in_and_a_password_signs_in(app, engineer):
    client = app.test_client()
    cookie = client.get("/monitoring/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/monitoring" in cookie
    assert "Secure" not in cookie  # MODELYARD_DASHBOARD_COOKIE_SECURE is off outside production
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 302 and answer.location == f"/monitoring/login?next={path}", path

    wrong = sign_in(client, "erin", "not the password")
    assert wrong.status_code == 401 and "wrong" in wrong.get_data(as_text=True)
    assert client.get("/monitoring/models").status_code == 302

    signed = sign_in(client, "erin")
    assert signed.status_code == 303 and signed.location == "/monitoring/models"
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.get_data(as_text=True)[:500])
        assert "erin (ml_engineer)" in answer.get_data(as_text=True)
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]

    out = client.post("/monitoring/logout", data={"csrf_token": _csrf(client.get("/monitoring/models").get_data(as_text=True))})
    assert out.status_code == 303 and client.get("/monitoring/models").status_code == 302


def test_sign_in_leads_only_to_a_dashboards_page(app, engineer):
    client = app.test_client()
    csrf = _csrf(client.get("/monitoring/login").get_data(as_text=True))
    for target in ("https://evil.example/x", "//evil.example/x", "/api/v1/users"):
        answer = client.post("/monitoring/login", data={"username": "erin", "password": PASSWORD, "csrf_token": csrf,
                                                        "next": target})
        assert answer.status_code == 303 and answer.location == "/monitoring/models", target
        csrf = _csrf(client.get("/monitoring/login").get_data(as_text=True))


def test_a_form_without_the_csrf_token_or_from_another_site_is_refused(app, engineer, browser):
    client = app.test_client()
    client.get("/monitoring/login")
    refused = client.post("/monitoring/login", data={"username": "erin", "password": PASSWORD})
    assert refused.status_code == 403 and "reload the page" in refused.get_data(as_text=True)
    assert client.get("/monitoring/models").status_code == 302  # not signed in

    csrf = _csrf(browser.get("/monitoring/alerts").get_data(as_text=True))
    foreign = browser.post("/monitoring/logout", data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.get_data(as_text=True)
    by_referer = browser.post("/monitoring/logout", data={"csrf_token": csrf},
                              headers={"Referer": "http://evil.example/page"})
    assert by_referer.status_code == 403
    assert browser.get("/monitoring/models").status_code == 200  # still signed in
    same = browser.post("/monitoring/logout", data={"csrf_token": csrf}, headers={"Origin": "http://localhost"})
    assert same.status_code == 303


def _firing_alert(app, model_id: str) -> uuid.UUID:
    from services.monitoring.tables import Alert, AlertRule

    with app.extensions["modelyard"].db.transaction() as session:
        rule = AlertRule(name="slow", metric="latency_p95_ms", threshold=100.0, window_minutes=60, enabled=True,
                         model_id=uuid.UUID(model_id), created_by="erin")
        session.add(rule)
        session.flush()
        alert = Alert(rule_id=rule.id, model_id=uuid.UUID(model_id), metric="latency_p95_ms", state="firing",
                      value=250.0, threshold=100.0, fired_at=datetime.now(timezone.utc))
        session.add(alert)
        session.flush()
        return alert.id


def test_an_ml_engineer_acknowledges_an_alert_and_a_viewer_cannot(app, client, ds, browser):
    model = model_with_versions(client, ds)
    alert_id = _firing_alert(app, model["id"])
    viewer = app.test_client()
    make_user(app, "viewer", username="vic")
    assert sign_in(viewer, "vic").status_code == 303
    page = viewer.get("/monitoring/alerts").get_data(as_text=True)
    assert "firing" in page and "Acknowledge</button>" not in page
    refused = viewer.post(f"/monitoring/alerts/{alert_id}/acknowledge", data={"csrf_token": _csrf(page)})
    assert refused.status_code == 403 and "ml_engineer" in refused.get_data(as_text=True)

    page = browser.get("/monitoring/alerts").get_data(as_text=True)
    assert "Acknowledge</button>" in page
    done = browser.post(f"/monitoring/alerts/{alert_id}/acknowledge", data={"csrf_token": _csrf(page)})
    assert done.status_code == 303
    assert client.get(f"/api/v1/alerts/{alert_id}", headers=ds).json["state"] == "acknowledged"
    assert "acknowledged by erin" in browser.get("/monitoring/alerts").get_data(as_text=True)


def test_an_unknown_id_is_a_404_page_and_bad_input_no_stack_trace(browser):
    for path in ("/monitoring/models/nobody", f"/monitoring/deployments/{uuid.uuid4()}",
                 f"/monitoring/ab-tests/{uuid.uuid4()}", "/monitoring/drift?model=nobody"):
        answer = browser.get(path)
        assert answer.status_code == 404 and answer.mimetype == "text/html", path
        assert "Traceback" not in answer.get_data(as_text=True)
    for path in ("/monitoring/models?cursor=garbage", "/monitoring/alerts?state=sleeping",
                 "/monitoring/models/nobody?days=-1"):
        answer = browser.get(path)
        assert 400 <= answer.status_code < 500 and answer.mimetype == "text/html", (path, answer.status_code)


def _records(model_id: str) -> list[dict]:
    this_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    records = []
    for back in range(1, 49):
        for n in range(4):
            records.append({"model_id": model_id, "request_id": f"h{back}-{n}", "prediction": n % 3,
                            "latency_ms": 400.0 if back == 3 else 20.0 + n,
                            "features": {"sepal_length": 5.0 + n / 10, "sepal_width": 3.0, "petal_length": 1.4,
                                         "petal_width": 0.2},
                            "timestamp": (this_hour - timedelta(hours=back, minutes=-5 * n)).isoformat()})
    return records


def test_a_models_page_embeds_the_apis_figures_and_lists_it(app, client, ds, browser):
    model = model_with_versions(client, ds)
    sent = _records(model["id"])
    assert client.post(PREDICTIONS, json={"records": sent}, headers=ds).json["stored"] == len(sent)

    page = browser.get(f"/monitoring/models/{model['id']}")
    assert page.status_code == 200
    figures = _figures(page.get_data(as_text=True))
    performance = client.get(f"/api/v1/models/{model['id']}/performance?days=7&granularity=hour", headers=ds).json
    anomalies = client.get(f"/api/v1/models/{model['id']}/anomalies?days=7", headers=ds).json
    for embedded, api in ((figures["performance"], performance), (figures["anomalies"], anomalies)):
        assert {key: value for key, value in embedded.items() if key != "until"} == \
            {key: value for key, value in api.items() if key != "until"}
    assert [point["value"] for point in figures["anomalies"]["metrics"]["latency_p95_ms"]["points"]] == \
        pytest.approx([400.0], rel=0.01)

    # The list counts the hours beat has tallied (every minute): none yet, then all of them.
    assert f">{len(sent)}<" not in browser.get("/monitoring/models").get_data(as_text=True)
    with app.extensions["modelyard"].db.transaction() as session:
        # What the registry's model_version.registered event leaves in monitoring (handlers.VersionBaselines).
        session.add(VersionBaseline(model_id=uuid.UUID(model["id"]), version=1, model_type=model["type"]))
    with app.extensions["modelyard"].db.transaction() as session:
        assert rollups.refresh(session, hours=1000)
    listed = browser.get("/monitoring/models").get_data(as_text=True)
    assert model["name"] in listed and f">{len(sent)}<" in listed


def test_the_drift_page_shows_the_latest_standard_report_as_the_api_answers_it(client, ds, browser):
    model = model_with_versions(client, ds)
    page = browser.get(f"/monitoring/drift?model={model['id']}").get_data(as_text=True)
    assert "No drift report yet" in page and _figures(page)["report"] is None


def test_the_list_pages_page_through_their_items(client, ds, browser):
    names = sorted(model_with_versions(client, ds, count=0)["name"] for _ in range(3))
    listed = browser.get("/monitoring/models").get_data(as_text=True)
    assert all(name in listed for name in names) and "Next page" not in listed
