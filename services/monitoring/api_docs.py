"""/api/v1/docs: the platform's one API document (/api/v1/openapi.json, every service's routes) rendered by
Redoc, served from the package (static/vendor/redoc, MIT): no CDN, so it works offline and leaks no visit.

Monitoring serves the platform's browser pages (these and the dashboards); the page asks for the document at
/api/v1/openapi.json, which the gateway serves merged under `make stack`, and the all-in-one app under `make run`.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

# Redoc styles with inline <style> elements and runs its search index in a worker it makes from a blob.
DOCS_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'")

docs = Blueprint("api_docs", __name__, url_prefix="/api/v1/docs", template_folder="templates",
                 static_folder="static/vendor/redoc", static_url_path="/assets")


@docs.get("")
def page():
    return render_template("api_docs.html")


@docs.after_request
def _policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    return response
