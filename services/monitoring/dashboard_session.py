"""Signing in to the dashboards, and what guards their forms.

A browser cannot send a bearer token, so the dashboards keep one in a session cookie: signing in asks
identity's token endpoint (the one password check of the platform, its throttling included), and the
token it answers is what every page then shows data as, checked on every request as any bearer token is
(expiry, withdrawal), and forwarded to the other services a page asks. The cookie is signed with the
platform's JWT secret (itsdangerous), HttpOnly, SameSite=Lax, and Secure where MODELYARD_DASHBOARD_COOKIE_SECURE
says (production); it lives as long as the token.

Every form carries the session's CSRF token, and a POST whose Origin (or, without one, Referer) names
another site is refused before its form is read. Signing in starts a new session, so a CSRF token planted
before cannot outlive it.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Response, current_app, g, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from shared.auth import Actor, actor_from_token
from shared.errors import DomainError, Forbidden, Unauthorized
from shared.request_context import request_id, runtime
from shared.service_client import ServiceUnavailable, fetcher

COOKIE = "modelyard_dashboards"
# The dashboards alone read it: no other path (the API) is sent the cookie.
COOKIE_PATH = "/monitoring"
SALT = "modelyard.dashboards.session"
BAD_SIGN_IN = "The user name or password is wrong, or the account is inactive."


class TooManySignIns(DomainError):
    status, title, slug = 429, "Too many sign-ins", "too-many-requests"


def _serializer() -> URLSafeSerializer:
    # The JWT secret every process of the platform shares, under a salt of its own: a session cookie is no token.
    return URLSafeSerializer(current_app.config["JWT_SECRET_KEY"], salt=SALT)


def current() -> dict[str, Any]:
    """This request's session: the cookie's, or a new one holding only a CSRF token."""
    if "dashboard_session" not in g:
        try:
            found = _serializer().loads(request.cookies.get(COOKIE, ""))
        except BadSignature:
            found = None
        if not isinstance(found, dict) or not isinstance(found.get("csrf"), str):
            found, g.dashboard_session_changed = {"csrf": secrets.token_urlsafe(32)}, True
        g.dashboard_session = found
    return g.dashboard_session


def _replace(session: dict[str, Any]) -> None:
    g.dashboard_session, g.dashboard_session_changed = session, True


def save(response: Response) -> Response:
    """Write the session's cookie when the request changed it (after_request)."""
    if g.get("dashboard_session_changed"):
        response.set_cookie(COOKIE, _serializer().dumps(g.dashboard_session), path=COOKIE_PATH, httponly=True,
                            samesite="Lax", secure=runtime().settings.dashboard_cookie_secure,
                            max_age=runtime().settings.jwt_expires_seconds)
    # A page shows one user's data: no shared cache may keep it.
    response.headers.setdefault("Cache-Control", "no-store")
    response.vary.add("Cookie")
    return response


def same_origin() -> bool:
    """Whether a POST comes from a page of this site: its Origin, or without one its Referer, names this host.
    Neither sent (a client that is no browser): the CSRF token alone decides."""
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if not sent:
        return True
    parts = urlsplit(sent)
    if parts.scheme not in ("http", "https"):
        return False  # "null" (a sandboxed frame, a file) and anything stranger
    host = request.host
    # nginx forwards the Host without its port ($host): then only the host names are compared.
    theirs = parts.netloc if ":" in host else parts.hostname
    return (theirs or "").lower() == host.lower()


def check_form() -> None:
    """Refuse a POST from another site or without this session's CSRF token (403)."""
    if not same_origin():
        raise Forbidden("This form was sent from another site.")
    sent = request.form.get("csrf_token", "")
    if not sent or not hmac.compare_digest(sent.encode(), current()["csrf"].encode()):
        raise Forbidden("The form has expired or did not come from this site: reload the page and send it again.")


def csrf_token() -> str:
    return current()["csrf"]


def sign_in(username: str, password: str) -> None:
    """Ask identity to check the password; a new session holding its token, or Unauthorized."""
    fetch = fetcher(runtime().settings.identity_url, current_app._get_current_object())
    # The browser's address, so that identity throttles failed sign-ins per client as it does logins.
    headers = {"X-Request-ID": request_id(), "X-Forwarded-For": request.remote_addr or ""}
    status, body = fetch("/api/v1/auth/token", headers, {"username": username, "password": password})
    if status == 429:
        raise TooManySignIns((body or {}).get("detail", "Too many failed sign-ins: wait a while."))
    if status in (400, 401, 422):
        raise Unauthorized(BAD_SIGN_IN)
    if status != 200:
        raise ServiceUnavailable(f"Identity answered {status} to the sign-in.")
    _replace({"csrf": secrets.token_urlsafe(32), "token": body["access_token"]})


def sign_out() -> None:
    _replace({"csrf": secrets.token_urlsafe(32)})


def signed_in(view: Callable) -> Callable:
    """A page for a signed-in user: the sign-in page first otherwise (and when the token has expired or was
    withdrawn). `g.actor` is who they are."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = current().get("token")
        actor = None
        if token:
            try:
                actor = actor_from_token(token, runtime().token_generations)
            except Unauthorized:
                sign_out()
        if actor is None:
            here = request.full_path if request.query_string else request.path
            return redirect(url_for("dashboards.login", next=here))
        g.actor = actor
        return view(*args, **kwargs)

    return wrapper


def actor() -> Actor:
    return g.actor


def platform_headers() -> dict[str, str]:
    """Headers that ask another service as the signed-in user."""
    return {"Authorization": f"Bearer {current()['token']}", "X-Request-ID": request_id()}


def local_path(target: str | None) -> str | None:
    """`target` when it is a dashboards path of this site (where signing in may lead), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(COOKIE_PATH + "/") or "\\" in target:
        return None
    return target
