"""The gateway's nginx configuration, rendered from the services' manifests.

`make stack` renders it with each service's socket; docker-compose and k8s mount the committed
template (services/gateway/nginx.conf.template), whose ${<NAME>_UPSTREAM} and ${GATEWAY_PORT} the
nginx image fills in from its environment. `python -m launch.gateway` rewrites that template after a
manifest changes; tests/unit/test_catalog.py fails while it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from launch import catalog
from shared.service_spec import Location

TEMPLATE = Path(__file__).resolve().parent.parent / "services" / "gateway" / "nginx.conf.template"
# Where nginx finds the one API document (launch.openapi writes it): make stack points this at its var dir.
OPENAPI_PLACEHOLDER = "${OPENAPI_DOCUMENT}"

_HEADER = """\
# The gateway: /api/v1/<area> routed by prefix to the service that owns it.
# Generated from the services' manifests by `python -m launch.gateway`: edit those, not this file.
# docker-compose and k8s render it with the nginx image's envsubst templates; `make stack` renders it itself.
"""

_SERVER_TOP = """
server {
    listen ${GATEWAY_PORT};
    client_max_body_size 2g;          # services enforce their own, smaller, JSON limit
    proxy_request_buffering off;      # uploads stream through to the registry
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;

"""

_SERVER_BOTTOM = """\
    # One API document for the whole platform, built from every manifest (launch.openapi).
    location = /api/v1/openapi.json { alias ${OPENAPI_DOCUMENT}; default_type application/json; }
    location = /healthz { return 200 '{"status": "ok"}'; default_type application/json; }
    location / {
        default_type application/problem+json;
        return 404 '{"type": "https://modelyard.dev/problems/not-found", "title": "Not Found", "status": 404, "detail": "No service serves this path."}';
    }
}
"""

_MATCH = {"prefix": "", "exact": "= ", "regex": "~ "}


def upstream_variable(service: str) -> str:
    return f"{service.upper()}_UPSTREAM"


def _location(location: Location, service: str) -> str:
    return f"    location {_MATCH[location.match]}{location.path} {{ proxy_pass http://{service}; }}\n"


def template() -> str:
    """The server block with ${...} placeholders for upstreams, the port and the API document."""
    specs = [spec for spec in catalog.SERVICES if spec.locations]
    upstreams = "".join(f"upstream {spec.name} {{ server ${{{upstream_variable(spec.name)}}}; keepalive 32; }}\n"
                        for spec in specs)
    # Regex locations first, in catalog order: nginx tries them in the order written.
    ordered = sorted(((location, spec.name) for spec in specs for location in spec.locations),
                     key=lambda pair: pair[0].match != "regex")
    return _HEADER + upstreams + _SERVER_TOP + "".join(_location(*pair) for pair in ordered) + _SERVER_BOTTOM


def render(values: dict[str, str]) -> str:
    """The template with every placeholder filled from `values` (nginx's envsubst, done here)."""
    text = template()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def main() -> int:
    TEMPLATE.write_text(template())
    print(f"wrote {TEMPLATE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
