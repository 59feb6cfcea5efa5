"""The Flask edge every service shares: app factory, one transaction per request, body rules,
health, readiness and Prometheus metrics.

A service contributes blueprints; `create_service_app` wires everything else the same way for all.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

from apispec import BasePlugin
import flask
from flask import Flask, Response, current_app, g, request
from flask.views import MethodView
import flask_smorest
from flask_smorest import Api
from kombu import Connection
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import UnicodeConverter

from shared import strict_json
from shared.artifacts import ArtifactStore
from shared.auth import Credentials, TokenGenerations, VerifiedKeys, authorize_scrape, init_auth
from shared.cache import Cache
from shared.config import Settings, load_settings
from shared.db import Database
from shared.request_context import db_session, request_id, runtime
from shared.errors import (
    PROBLEM_JSON, DomainError, PayloadTooLarge, ProblemSchema, UnsupportedMediaType, ValidationFailed,
    install_error_handlers, problem,
)
from shared.refusals import install_refusal_audit
from shared.service_spec import READINESS_CHECKS
from shared.throttling import Throttle

JSON_TYPES = frozenset({"application/json"})
MULTIPART = "multipart/form-data"


@dataclass
class Runtime:
    """Per-process dependencies of a service, built once by the app factory."""

    settings: Settings
    db: Database
    cache: Cache
    artifacts: ArtifactStore
    credentials: Credentials
    token_generations: TokenGenerations
    throttle: Throttle
    verified_keys: VerifiedKeys = field(default_factory=VerifiedKeys)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # What /readyz demands (the service's manifest says; the database for every service today), and
    # what it only reports: the outbox keeps events while the broker is away, and reads bypass a cache
    # that is down, so neither is a reason to stop serving.
    readiness: dict[str, Callable[[], None]] = field(default_factory=dict)
    dependencies: dict[str, Callable[[], None]] = field(default_factory=dict)
    # What a service started in the background (threads, buffers), stopped when the app is closed.
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop what the app started and release its database connections; again, only the latter."""
        while self.closers:
            self.closers.pop()()
        self.db.dispose()


class Parser(FlaskParser):
    """webargs' parser, reading the JSON body Flask has parsed already (strictly, in the body checks)."""

    def _raw_load_json(self, req):
        # Parsing it again cost as much as the rest of a 1,000-row prediction's request path.
        parsed = req.get_json(silent=True) if is_json_request(req) else None
        return parsed if parsed is not None else super()._raw_load_json(req)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, with argument schemas built once instead of on every request, and the
    JSON body parsed once."""

    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema, *args, **kwargs):
        # webargs instantiates a schema class per request, deep-copying every field: a third of a
        # small write's CPU time. An instance is reused.
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


class ModelRefConverter(UnicodeConverter):
    """`<model:...>` in a route: a model's id or its exact name, as MLflow users address models.

    A path segment cannot hold a "/" (werkzeug decodes %2F before routing), so a name containing one
    is addressed by the model's id. The segment stays a string; the registry decides what it names.
    A NUL can be in no name (Postgres text refuses it), so a segment holding one matches no route: 404.
    """

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, *args, **kwargs)
        self.regex = "[^/\x00]+"


def _model_ref_schema(converter: ModelRefConverter) -> dict:
    return {"type": "string", "minLength": 1,
            "description": "The model's id, or its exact name (URL-encoded; a name containing '/' only by id)."}


def accepts(*content_types: str):
    """Declare the body types a view method takes (default: JSON only); others get 415."""

    def mark(fn):
        fn.accepted_content_types = frozenset(content_types)
        return fn

    return mark


class ModelyardFlask(Flask):
    json_provider_class = strict_json.StrictJSONProvider

    def dispatch_request(self):
        # Committing inside dispatch means a failed commit goes through the same error handlers
        # as any other exception, and the client never sees a success for an unsaved change.
        rv = super().dispatch_request()
        session = g.pop("db_session", None)
        if session is not None:
            try:
                session.commit()
            finally:
                session.close()
        return rv


def carries_credentials(fn):
    """Mark a view method whose answer holds a credential (a token, a new key): no cache may keep it."""
    fn.carries_credentials = True
    return fn


def _view_method() -> Callable | None:
    """The function that serves this request: a MethodView's method for its HTTP method, or the view."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    return getattr(view_class, request.method.lower(), None) if view_class else view


def _accepted_types() -> frozenset[str]:
    return getattr(_view_method(), "accepted_content_types", JSON_TYPES)


def _security_headers(response: Response) -> Response:
    """Headers that keep a browser from misusing an answer, on every answer, errors included."""
    # A browser must not guess that an uploaded artifact or a JSON answer is HTML or script.
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "application/json" or (response.mimetype or "").endswith("+json"):
        # Opened directly in a browser, JSON may load nothing and run nothing.
        response.headers["Content-Security-Policy"] = "default-src 'none'"
    if getattr(_view_method(), "carries_credentials", False):
        response.headers["Cache-Control"] = "no-store"
    return response


def _has_body() -> bool:
    # Any Transfer-Encoding (servers accept "gzip, chunked" and the like, not only "chunked") is a body
    # without a length: the limits apply to it as well. (Not wsgi.input_terminated: gunicorn sets it on
    # every request, bodiless POSTs included.)
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def _check_body() -> Response | None:
    """Body rules for every write: right content type (415), size limit (413), JSON object (400)."""
    if request.method not in {"POST", "PUT", "PATCH"} or not _has_body():
        return None
    settings = runtime().settings
    mimetype = request.mimetype
    accepted = _accepted_types()
    if mimetype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {mimetype or '(none)'} is not accepted here; send {' or '.join(sorted(accepted))}"
        )
    limit = settings.max_upload_bytes if mimetype == MULTIPART else settings.max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(_too_large(limit))
    # A body sent without a length (chunked) is read through werkzeug's limited stream, whose
    # `read()` stops quietly at the limit: 2 MiB of JSON would be parsed as its first 1 MiB (a
    # misleading 400, or a 201 when the cut falls in trailing whitespace). One byte of headroom
    # tells a body of exactly the limit from a longer one; the multipart parser reads on past the
    # headroom, which the stream refuses with a 413 of its own.
    request.max_content_length = limit + 1
    if mimetype in JSON_TYPES:
        if len(request.get_data()) > limit:
            raise PayloadTooLarge(_too_large(limit))
        if not isinstance(request.get_json(silent=True), dict):
            # Parsed (strictly, by the app's JSON provider) and cached above; parsed again only to say why not.
            try:
                strict_json.loads(request.get_data())
            except ValueError as exc:
                return problem(400, "Bad request", f"The body is not valid JSON: {exc}.", slug="malformed-json")
            return problem(400, "Bad request", "The body must be a JSON object.", slug="malformed-json")
    return None


def _too_large(limit: int) -> str:
    return f"The body is larger than this endpoint's limit of {limit} bytes."


def _check_query() -> None:
    """A NUL character can be neither stored nor searched for (Postgres text refuses it): 422 naming the parameter."""
    for name, values in request.args.lists():
        if any("\x00" in text for text in (name, *values)):
            raise ValidationFailed(f"The query parameter {name!r} contains a NUL character.",
                                   errors={name: ["Must not contain NUL characters."]})


def _install_metrics(app: Flask, rt: Runtime, service: str) -> None:
    requests_total = Counter(
        "modelyard_http_requests_total", "HTTP requests", ["service", "method", "endpoint", "status"],
        registry=rt.registry,
    )
    latency = Histogram(
        "modelyard_http_request_seconds", "HTTP request latency", ["service", "method", "endpoint"],
        registry=rt.registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    )

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())

    @app.after_request
    def _finish(response: Response):
        endpoint = request.endpoint or "unmatched"
        requests_total.labels(service, request.method, endpoint, response.status_code).inc()
        latency.labels(service, request.method, endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        response.headers["X-Request-ID"] = request_id()
        return response


def _ping_broker(url: str) -> None:
    with Connection(url, connect_timeout=2) as connection:
        connection.ensure_connection(max_retries=0)


class HealthSchema(Schema):
    status = fields.String()


class ReadinessSchema(Schema):
    status = fields.String(metadata={"description": "ready or not ready: whether the database answers"})
    checks = fields.Dict(keys=fields.String(), values=fields.String(),
                         metadata={"description": "what requests need (the database) -> ok, or why it is unavailable"})
    dependencies = fields.Dict(keys=fields.String(), values=fields.String(),
                               metadata={"description": "the broker and cache -> ok, or why unavailable; "
                                                        "reported only, the service keeps serving without them"})


def _probe(checks: dict[str, Callable[[], None]]) -> dict[str, str]:
    found = {}
    for name, check in checks.items():
        try:
            check()
            found[name] = "ok"
        except Exception as exc:  # a probe reports every failure, whatever its kind
            found[name] = f"unavailable: {exc.__class__.__name__}"
    return found


def _install_probes(api: Api, rt: Runtime) -> None:
    """/healthz, /readyz and /metrics, on a blueprint so that the OpenAPI document lists them too."""
    blp = Blueprint("probes", __name__, description="Liveness, readiness and Prometheus metrics")

    @blp.route("/healthz")
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def healthz():
        """The process is alive."""
        return {"status": "ok"}

    @blp.route("/readyz")
    @blp.doc(security=[])
    @blp.response(200, ReadinessSchema)
    @blp.alt_response(503, schema=ReadinessSchema, description="The database is unreachable.")
    def readyz():
        """Ready when what the service's requests need answers (its database); the broker and cache are
        reported beside, not required."""
        checks = _probe(rt.readiness)
        ready = all(state == "ok" for state in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks,
                "dependencies": _probe(rt.dependencies)}
        return body, 200 if ready else 503

    @blp.route("/health")
    @blp.doc(security=[])
    @blp.response(200, ReadinessSchema)
    @blp.alt_response(503, schema=ReadinessSchema, description="The database is unreachable.")
    def health():
        """/readyz under the name the brief's health checks use (`health_check_config.endpoint`)."""
        return readyz()

    @blp.route("/metrics")
    @blp.doc(security=[{"bearer": []}, {"api_key": []}])
    @blp.response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text exposition format.")
    def metrics():
        """Request counts and latencies for Prometheus: for an admin or the scrape token (see MODELYARD_METRICS_*)."""
        authorize_scrape(rt.settings)
        registry = rt.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Under gunicorn each worker counts for itself; the scrape must see all of them.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    api.register_blueprint(blp)


class ModelyardApi(Api):
    """flask-smorest's Api, documenting its blueprints' views when the document is first asked for rather than
    as they are registered: documenting was two thirds of building an app (a gunicorn worker's start, each
    test's app), and most processes never serve the document."""

    # The error responses flask-smorest documents for every operation take the shape errors really have.
    ERROR_SCHEMA = ProblemSchema

    def __init__(self, *args, **kwargs):
        self._undocumented: list[tuple[flask_smorest.Blueprint, str, list | None]] = []
        self._documenting = threading.Lock()
        super().__init__(*args, **kwargs)

    def register_blueprint(self, blp, *, parameters=None, **options):
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def document(self) -> dict:
        """The OpenAPI document, with every blueprint registered so far."""
        with self._documenting:
            for blp, name, parameters in self._undocumented:
                blp.register_views_in_doc(self, self._app, self.spec, name=name, parameters=parameters)
                self.spec.tag({"name": name, "description": blp.description})
            self._undocumented.clear()
            return self.spec.to_dict()

    def register_pages(self, blp: flask.Blueprint) -> None:
        """Mount a plain Flask blueprint of browser pages (HTML, assets): served, not in the API document."""
        self._app.register_blueprint(blp)

    def _openapi_json(self):
        return current_app.response_class(current_app.json.dumps(self.document(), indent=2, sort_keys=False),
                                          mimetype="application/json")


class ProblemResponses(BasePlugin):
    """Document the shared error responses under the content type they are sent with."""

    def response_helper(self, response, **kwargs):
        content = response.get("content") or {}
        if "application/json" in content:
            return {"content": {PROBLEM_JSON: content["application/json"]}}
        return None


def create_service_app(
    service: str,
    blueprints: Iterable[Callable[[Api, Runtime], None]],
    settings: Settings | dict | None = None,
    *,
    credentials: Credentials,
    readiness: Iterable[str] = ("database",),
) -> Flask:
    """Build a service: `blueprints` are callables that register routes on the shared Api; `credentials`
    is what authentication reads of users and keys (identity's); `readiness` names what /readyz
    demands (shared.service_spec.READINESS_CHECKS), the rest it only reports."""
    if not isinstance(settings, Settings):
        settings = load_settings(settings)
    app = ModelyardFlask(service)
    if settings.proxy_hops:
        # The client's address (login throttling counts by it) is the one the trusted proxies saw.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)
    app.config.update(
        API_TITLE="Modelyard",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        JSON_SORT_KEYS=False,
    )
    db = Database(settings.database_url)
    rt = Runtime(settings=settings, db=db, cache=Cache.from_settings(settings),
                 artifacts=ArtifactStore.from_settings(settings), credentials=credentials,
                 token_generations=TokenGenerations(db.sessions, credentials),
                 throttle=Throttle(settings))
    probes = {"database": db.ping, "broker": lambda: _ping_broker(settings.broker_url)}
    if settings.redis_url:
        probes["cache"] = rt.cache.ping
    unknown = set(readiness) - set(READINESS_CHECKS)
    if unknown:
        raise ValueError(f"unknown readiness checks {sorted(unknown)}; known: {READINESS_CHECKS}")
    rt.readiness = {name: probe for name, probe in probes.items() if name in readiness}
    rt.dependencies = {name: probe for name, probe in probes.items() if name not in readiness}
    app.extensions["modelyard"] = rt
    app.url_map.converters["model"] = ModelRefConverter
    init_auth(app, settings)
    _install_metrics(app, rt, service)
    app.before_request(_check_query)
    app.before_request(_check_body)
    app.after_request(_security_headers)

    @app.teardown_request
    def _close_session(_exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.rollback()
            session.close()

    api = ModelyardApi(app, spec_kwargs={"extra_plugins": [ProblemResponses()]})
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.components.security_scheme("api_key", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    api.spec.options["security"] = [{"bearer": []}, {"api_key": []}]
    api.register_converter(ModelRefConverter, _model_ref_schema)
    # After Api(): flask-smorest installs its own HTTPException handler, which ours replaces.
    install_error_handlers(app)
    install_refusal_audit(app, db)
    _install_probes(api, rt)
    for register in blueprints:
        register(api, rt)
    return app


__all__ = [
    "DomainError", "MethodView", "Runtime", "accepts", "carries_credentials", "create_service_app", "db_session",
    "request_id", "runtime",
]
