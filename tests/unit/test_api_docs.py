"""/api/v1/docs renders the platform's one API document with the Redoc shipped in the package: no CDN."""

from __future__ import annotations

import re

from launch import apps

SETTINGS = {"env": "development", "database_url": "sqlite://", "broker_url": "memory://", "redis_url": "",
            "jwt_secret": "unit"}


def test_the_docs_page_renders_the_merged_document_with_the_packaged_redoc():
    client = apps.create_app(SETTINGS).test_client()
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<redoc spec-url="/api/v1/openapi.json">' in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/api/v1/docs/assets/redoc.standalone.js"]  # from the package, nothing from elsewhere
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = client.get(scripts[0])
    assert script.status_code == 200 and b"Redoc" in script.data[:5000] + script.data[-5000:]
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_the_docs_page_is_the_monitoring_services_and_its_path_reaches_it_at_the_gateway():
    client = apps.service_app("monitoring", SETTINGS).test_client()
    assert client.get("/api/v1/docs").status_code == 200
    from launch import gateway
    assert "location /api/v1/docs { proxy_pass http://monitoring; }" in gateway.template()
