"""The dashboards and the API docs in a real browser (Playwright driving Chromium) against `make run`.

Each page is loaded signed in, and its charts are checked to have drawn the platform's real numbers: the
uPlot instances' data (window.modelyardCharts) against the figures the page embeds and the API answers, a
canvas on the page, and no script or policy error in the console. A viewer sees no way to acknowledge an
alert and is refused when trying anyway; a form sent from another Origin is refused. Screenshots go to
tests/e2e/screenshots/ (not committed). The machine's Chromium (MODELYARD_TEST_CHROMIUM, else chromium on
the PATH) or Playwright's own; with neither, or without Playwright, every test here is skipped saying why.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from tests.support.polling import wait_for
from tests.support.walks import deploy_and_wait, embedded_platform, login, served_model, train_tiny_model

pytestmark = pytest.mark.e2e

PASSWORD = "first-admin-pw"
VIEWER_PASSWORD = "viewer-password"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def _chromium_path() -> str | None:
    for name in (os.environ.get("MODELYARD_TEST_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
    path = _chromium_path()
    playwright = sync_api.sync_playwright().start()
    try:
        # --no-sandbox: Chromium's sandbox refuses to start as root, as in a CI container.
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
    except sync_api.Error as exc:
        playwright.stop()
        pytest.skip(f"no browser to drive: chromium is not on the PATH and Playwright's own could not start "
                    f"({str(exc).splitlines()[0]}); apt-get install chromium, or set MODELYARD_TEST_CHROMIUM")
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="module")
def platform(chromium, tmp_path_factory):
    with embedded_platform(tmp_path_factory.mktemp("var"), PASSWORD) as (base, _, _):
        yield base


@pytest.fixture(scope="module")
def world(platform):
    """What the pages show: a trained, served model with predictions, an alert on it and its drift report; a model
    deployed twice and rolled back; an A/B test between two trained models with each arm's predictions."""
    base = platform
    http = login(base, PASSWORD)
    assert http.post(f"{base}/api/v1/users", json={"username": "vera", "password": VIEWER_PASSWORD,
                                                   "role": "viewer"}).status_code == 201
    watched = train_tiny_model(http, base, name="watched")
    live = deploy_and_wait(http, base, watched, environment="production")
    assert live["status"] == "live", live
    # Fires at the next evaluation (beat, every minute): every served prediction is slower than a microsecond.
    assert http.post(f"{base}/api/v1/alert-rules", json={"name": "any latency", "model_id": watched,
                                                         "metric": "latency_p95_ms", "threshold": 0.001}
                     ).status_code == 201

    rolled = served_model(http, base, "rolled", versions=2)
    first = deploy_and_wait(http, base, rolled["id"], environment="development", version=1)
    second = deploy_and_wait(http, base, rolled["id"], environment="development", version=2)
    assert first["status"] == second["status"] == "live"
    assert http.post(f"{base}/api/v1/deployments/{second['id']}/rollback").status_code == 200

    challenger = train_tiny_model(http, base, name="challenger")
    test = http.post(f"{base}/api/v1/ab-tests", json={
        "name": "watched vs challenger", "type": "traffic_split", "model_a_id": watched, "model_b_id": challenger,
        "traffic_split": 0.5, "success_metrics": ["accuracy"], "guardrail_metrics": ["latency", "error_rate"],
        "min_sample_size": 100, "max_duration_days": 30, "significance_level": 0.05})
    assert test.status_code == 201, test.text
    assert http.post(f"{base}/api/v1/ab-tests/{test.json()['id']}/start").status_code == 200

    def both_arms() -> bool:
        answers = [http.post(f"{base}/api/v1/endpoints/{live['endpoint']}/predict",
                             json={"instances": [{"a": n % 7, "b": (n * 5) % 11}], "unit_id": f"user-{n}"}).json()
                   for n in range(60)]
        return {answer["model_id"] for answer in answers} == {watched, challenger}

    wait_for(both_arms, timeout=60, interval=0.5, what="both arms to answer")

    def drift() -> dict | None:
        answer = http.get(f"{base}/api/v1/models/{watched}/drift?refresh=true")
        return answer.json() if answer.status_code == 200 else None

    wait_for(drift, timeout=30, what="the served predictions to reach monitoring's store")
    # Two days of whole hours recorded by a client (the anomalies judge whole hours only), one of them slow.
    this_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    records = [{"model_id": watched, "request_id": f"h{back}-{n}", "prediction": "yes" if n % 2 else "no",
                "latency_ms": 400.0 if back == 3 else 20.0 + n, "features": {"a": n, "b": back % 11},
                "timestamp": (this_hour - timedelta(hours=back) + timedelta(minutes=5 * n)).isoformat()}
               for back in range(1, 49) for n in range(4)]
    recorded = http.post(f"{base}/api/v1/monitoring/predictions", json={"records": records})
    assert recorded.status_code == 202 and recorded.json()["stored"] == len(records), recorded.text
    return {"http": http, "watched": watched, "rolled": rolled["id"], "rollback": second["id"],
            "test": test.json()["id"]}


class Page:
    """A signed-in browser tab that fails the test on any script error or policy violation it logs."""

    def __init__(self, browser, base: str, username: str, password: str):
        self.context = browser.new_context(base_url=base)
        self.tab = self.context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.tab.on("pageerror", lambda error: self.errors.append(str(error)))
        self.tab.goto("/monitoring/models")
        assert "/monitoring/login" in self.tab.url  # signed out: the sign-in page first
        self.tab.fill("input[name=username]", username)
        self.tab.fill("input[name=password]", password)
        self.tab.click("button[type=submit]")
        self.tab.wait_for_url("**/monitoring/models")

    def open(self, path: str, shot: str) -> None:
        answer = self.tab.goto(path)
        assert answer.status == 200, (path, answer.status)
        SCREENSHOTS.mkdir(exist_ok=True)
        self.tab.screenshot(path=str(SCREENSHOTS / f"{shot}.png"), full_page=True)
        assert not self.errors, self.errors

    def figures(self) -> dict:
        return self.tab.evaluate("JSON.parse(document.getElementById('figures').textContent)")

    def chart(self, name: str) -> list[list]:
        """The data the chart `name` drew, after checking it has a canvas on the page."""
        drawn = self.tab.evaluate("name => { const c = window.modelyardCharts[name];"
                                  " return c && c.root.querySelector('canvas') ? c.data : null; }", name)
        assert drawn is not None, f"chart {name} did not draw"
        return drawn

    def csrf(self) -> str:
        return self.tab.get_attribute("input[name=csrf_token]", "value")


@pytest.fixture(scope="module")
def admin_page(chromium, platform, world):
    page = Page(chromium, platform, "admin", PASSWORD)
    yield page
    page.context.close()


def test_a_models_page_draws_its_performance_and_latency_with_the_apis_numbers(admin_page, world):
    http, model_id = world["http"], world["watched"]
    admin_page.open("/monitoring/models", "models")
    assert admin_page.tab.get_by_role("link", name="watched").count() == 1
    admin_page.open(f"/monitoring/models/{model_id}", "model")
    figures = admin_page.figures()
    api = http.get(f"{_base(admin_page)}/api/v1/models/{model_id}/anomalies?days=7").json()
    latency = admin_page.chart("latency")
    assert latency[1] == [bucket["value"] for bucket in api["metrics"]["latency_p95_ms"]["series"]]
    assert latency[1] == [bucket["value"] for bucket in figures["anomalies"]["metrics"]["latency_p95_ms"]["series"]]
    assert any(value is not None for value in latency[1])  # the recorded hours
    marked = [value for value in latency[3] if value is not None]
    assert marked == [point["value"] for point in api["metrics"]["latency_p95_ms"]["points"]] and marked
    performance = admin_page.chart("performance")
    assert len(performance[0]) == len(figures["performance"]["series"])
    assert performance[2] == [bucket["error_rate"] for bucket in figures["performance"]["series"]]


def _base(page: Page) -> str:
    return page.tab.url.split("/monitoring", 1)[0]


def test_the_drift_page_draws_each_features_reference_and_current_histogram(admin_page, world):
    admin_page.open(f"/monitoring/drift?model={world['watched']}", "drift")
    report = admin_page.figures()["report"]
    api = world["http"].get(f"{_base(admin_page)}/api/v1/models/{world['watched']}/drift").json()
    assert report["computed_at"] == api["computed_at"]  # the stored report the API answers too
    for feature in api["features"]:
        drawn = admin_page.chart(f"drift:{feature['name']}")
        assert drawn[1] == pytest.approx(feature["histogram"]["reference"])
        assert drawn[2] == pytest.approx(feature["histogram"]["current"])
        assert sum(drawn[2]) == pytest.approx(1.0)


def test_the_deployments_timeline_marks_every_transition_and_the_rollback(admin_page, world):
    admin_page.open("/monitoring/deployments", "deployments")
    admin_page.open(f"/monitoring/deployments/{world['rollback']}", "deployment")
    api = world["http"].get(f"{_base(admin_page)}/api/v1/models/{world['rolled']}/deployments").json()["items"]
    drawn = admin_page.chart("timeline")
    transitions = [step for deployment in api for step in deployment["transitions"]]
    assert len(drawn[0]) == len(transitions)
    marked = [sum(series[index] is not None for series in drawn[1:]) for index in range(len(drawn[0]))]
    assert marked == [1] * len(transitions)  # every transition drawn once, in one of the three series
    rollbacks = [value for value in drawn[3] if value is not None]
    assert rollbacks == [2] * sum(step["to_status"] in ("rolled_back", "failed") for step in transitions) and rollbacks


def test_the_ab_test_page_draws_its_intervals_and_the_always_valid_p_values_path(admin_page, world):
    admin_page.open("/monitoring/ab-tests", "ab-tests")
    admin_page.open(f"/monitoring/ab-tests/{world['test']}", "ab-test")
    figures = admin_page.figures()
    api = world["http"].get(f"{_base(admin_page)}/api/v1/ab-tests/{world['test']}/results").json()
    assert figures["results"] == api  # the latest look, the one the API answers while it is fresh
    drawn = admin_page.chart("intervals")
    assert drawn[1] == [entry["difference"] for entry in api["metrics"]]
    assert drawn[2] == [entry["ci"][0] if entry["ci"] else None for entry in api["metrics"]]
    path = admin_page.chart("p_path")
    assert len(path[0]) == len(figures["path"]) >= 1
    assert path[-1] == [0.05] * len(path[0])  # alpha


def test_an_ml_engineer_acknowledges_an_alert_and_a_viewer_cannot(chromium, platform, admin_page, world):
    def firing() -> bool:
        admin_page.tab.goto("/monitoring/alerts?state=firing")
        return admin_page.tab.get_by_role("button", name="Acknowledge").count() > 0

    wait_for(firing, timeout=150, interval=3, what="beat's evaluation to fire the latency alert")
    viewer = Page(chromium, platform, "vera", VIEWER_PASSWORD)
    try:
        viewer.open("/monitoring/alerts?state=firing", "alerts-viewer")
        assert viewer.tab.get_by_text("firing").count() >= 1
        assert viewer.tab.get_by_role("button", name="Acknowledge").count() == 0
        alert_id = world["http"].get(f"{platform}/api/v1/alerts?state=firing").json()["items"][0]["id"]
        tried = viewer.context.request.post(f"/monitoring/alerts/{alert_id}/acknowledge",
                                            form={"csrf_token": viewer.csrf()}, headers={"Origin": platform})
        assert tried.status == 403 and "ml_engineer" in tried.text()
    finally:
        viewer.context.close()

    admin_page.open("/monitoring/alerts?state=firing", "alerts")
    admin_page.tab.get_by_role("button", name="Acknowledge").first.click()
    admin_page.tab.wait_for_url("**/monitoring/alerts")
    assert admin_page.tab.get_by_text("acknowledged by admin").count() >= 1


def test_a_form_sent_from_another_origin_is_refused(admin_page, platform):
    admin_page.open("/monitoring/alerts", "alerts-all")
    foreign = admin_page.context.request.post("/monitoring/logout", form={"csrf_token": admin_page.csrf()},
                                              headers={"Origin": "https://evil.example"})
    assert foreign.status == 403 and "another site" in foreign.text()
    admin_page.open("/monitoring/models", "still-signed-in")  # the refused form signed nobody out


def test_the_api_docs_render_the_platforms_document(chromium, platform):
    context = chromium.new_context(base_url=platform)
    try:
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto("/api/v1/docs")
        tab.get_by_role("heading", name="Modelyard").first.wait_for(timeout=30_000)
        # Every service's operations: identity's token and monitoring's drift among them.
        document = requests.get(f"{platform}/api/v1/openapi.json", timeout=10).json()
        assert "/api/v1/auth/token" in document["paths"] and any(path.endswith("/drift") for path in document["paths"])
        assert tab.get_by_text("Exchange a user name and password for a bearer token.").count() >= 1
        SCREENSHOTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / "api-docs.png"))
        assert not errors, errors
    finally:
        context.close()
