"""The shared edge every service gets: probes, metrics and problem+json for malformed requests."""

import pytest


pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings_overrides, clean_db, make_app):
    return make_app(settings_overrides).test_client()


def test_health_and_readiness_report_ok(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["database"] == "ok"


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    body = client.get("/metrics").get_data(as_text=True)
    assert "modelyard_http_requests_total" in body


def test_unknown_route_is_problem_json(client):
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404


def test_openapi_document_is_served(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json["info"]["title"] == "Modelyard"


def test_readiness_fails_with_503_when_the_broker_is_unreachable(settings_overrides, clean_db, servers, make_app):
    from tests.support.tcp_proxy import TcpProxy

    proxy = TcpProxy.for_url(servers["BROKER"])
    client = make_app({**settings_overrides, "broker_url": proxy.url_for(servers["BROKER"])}).test_client()
    assert client.get("/readyz").json["checks"]["broker"] == "ok"
    proxy.cut()
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"]["broker"].startswith("unavailable")
        assert response.json["checks"]["database"] == "ok"
    finally:
        proxy.restore()
        proxy.cut()
