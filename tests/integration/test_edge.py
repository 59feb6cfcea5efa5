"""The shared edge every service gets: probes, metrics and problem+json for malformed requests."""

import functools

import pytest

from launch.apps import service_app
from tests.support.auth import api_key_headers, headers_for


pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings_overrides, clean_db, make_app):
    return make_app(settings_overrides).test_client()


def test_health_and_readiness_report_ok(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["database"] == "ok"


@pytest.fixture
def admin(client):
    return headers_for(client.application, "admin")


def test_metrics_are_prometheus_text(client, admin):
    client.get("/healthz")
    body = client.get("/metrics", headers=admin).get_data(as_text=True)
    assert "modelyard_http_requests_total" in body


def test_metrics_refuse_a_caller_without_credentials_or_below_admin(client):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/problem+json"
    viewer = client.get("/metrics", headers=api_key_headers(client.application, "viewer"))
    assert viewer.status_code == 403
    assert viewer.mimetype == "application/problem+json"
    assert "modelyard_http_requests_total" not in viewer.get_data(as_text=True)


def test_metrics_answer_a_scraper_with_the_scrape_token_and_no_one_with_another(settings_overrides, clean_db,
                                                                              make_app):
    client = make_app({**settings_overrides, "metrics_token": "scrape-token-0123456789"}).test_client()
    scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert scraped.status_code == 200
    assert "modelyard_http_requests_total" in scraped.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-token-wrong"}).status_code == 401


def test_metrics_are_public_only_when_a_setting_says_the_network_is_private(settings_overrides, clean_db,
                                                                           make_app):
    client = make_app({**settings_overrides, "metrics_public": True}).test_client()
    assert client.get("/metrics").status_code == 200


def test_unknown_route_is_problem_json(client):
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404


def test_openapi_document_is_served(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json["info"]["title"] == "Modelyard"


@pytest.mark.parametrize("service, read, status", [
    ("identity", "/api/v1/users/me", 200),
    ("registry", "/api/v1/models", 200),
    ("training", "/api/v1/trainings/00000000-0000-4000-8000-000000000001", 404),  # answered: no such job
])
def test_a_broker_outage_leaves_every_service_ready_and_answering_reads(settings_overrides, clean_db, servers,
                                                                          make_app, service, read, status):
    from tests.support.auth import make_user
    from tests.support.tcp_proxy import TcpProxy

    proxy = TcpProxy.for_url(servers["BROKER"])
    factory = functools.partial(service_app, service)
    client = make_app({**settings_overrides, "broker_url": proxy.url_for(servers["BROKER"])}, factory).test_client()
    _, headers = make_user(client.application, "viewer")
    assert client.get("/readyz").json["dependencies"]["broker"] == "ok"
    proxy.cut()
    try:
        response = client.get("/readyz")
        assert response.status_code == 200 and response.json["status"] == "ready"
        assert response.json["checks"] == {"database": "ok"}
        assert response.json["dependencies"]["broker"].startswith("unavailable")
        assert client.get(read, headers=headers).status_code == status
    finally:
        proxy.restore()
        proxy.cut()


@pytest.mark.postgres_only  # a server to cut off; SQLite is a file
def test_a_lost_database_connection_is_a_503_to_retry_and_the_next_request_reconnects(
        settings_overrides, clean_db, servers, make_app, database_url):
    from tests.support.auth import headers_for
    from tests.support.tcp_proxy import TcpProxy

    proxy = TcpProxy.for_url(database_url)
    app = make_app({**settings_overrides, "database_url": proxy.url_for(database_url)})
    client = app.test_client()
    headers = headers_for(app, "data_scientist")
    body = {"name": "survives-restarts", "type": "classification", "framework": "scikit_learn"}
    assert client.get("/api/v1/models", headers=headers).status_code == 200
    engine = app.extensions["modelyard"].db.engine
    with engine.connect(), engine.connect():
        pass  # two pooled connections now exist
    proxy.cut()  # what a database restart does to them
    proxy.restore()
    try:
        lost = client.post("/api/v1/models", json=body, headers=headers)
        assert lost.status_code == 503
        assert lost.mimetype == "application/problem+json"
        assert lost.headers["Retry-After"] == "1"
        assert client.post("/api/v1/models", json=body, headers=headers).status_code == 201
    finally:
        proxy.cut()


def test_health_answers_as_readiness_does_under_the_briefs_name(client):
    # The brief's health checks name /health; Kubernetes probes of a serving pool use it as rendered.
    assert client.get("/health").json == client.get("/readyz").json
