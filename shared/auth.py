"""Authentication (JWT bearer tokens and API keys) and the role check every endpoint declares.

Roles are ordered; each includes the ones before it. Users and API keys are the identity service's
tables: authentication reads them only through the `Credentials` identity supplies (the composition
root hands it to every service's app), never with SQL of its own.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, decode_token
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import utcnow
from shared.errors import Forbidden, Unauthorized
from shared.request_context import runtime

ROLES = ("viewer", "data_scientist", "ml_engineer", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
log = logging.getLogger(__name__)

API_KEY_PREFIX = "myd"
# A key's public prefix is hex (see new_api_key); anything else is refused before it reaches a query.
_KEY_PREFIX = re.compile(r"[0-9a-f]{1,16}")


@dataclass(frozen=True)
class Actor:
    """Who is calling: a user, directly (token) or through one of their API keys."""

    id: str
    name: str
    role: str
    via: str  # "token" or "api_key"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class StoredKey:
    """An API key as its owner stored it: what checking a presented key needs."""

    id: uuid.UUID
    key_hash: str
    role: str
    owner_id: uuid.UUID
    owner_name: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class Credentials(Protocol):
    """What authentication reads from the owner of users and API keys (the identity service)."""

    def stored_key(self, session: Session, prefix: str) -> StoredKey | None:
        """The key with this public prefix, if any."""

    def raised_generations(self, session: Session) -> dict[str, int]:
        """Each user whose token generation ever rose (user id -> generation); the rest are at 0."""

    def record_key_use(self, session: Session, key_id: uuid.UUID) -> None:
        """Note that the key was just used (its owner sees when a key was last used)."""


class KnownCallerRefused(Unauthorized):
    """A 401 whose credential names a known user or key (a wrong password or key secret, a revoked or
    expired key, a withdrawn token): it is audited as a denied request under that user."""

    def __init__(self, detail: str, *, actor_id: str, actor: str):
        super().__init__(detail)
        self.actor_id = actor_id
        self.actor = actor


def init_auth(app: Flask, settings: Settings) -> None:
    secret = settings.jwt_secret or secrets.token_urlsafe(32)
    app.config.update(
        JWT_SECRET_KEY=secret,
        JWT_ALGORITHM="HS256",
        # Only HS256 is ever accepted: a token claiming `alg: none` or another algorithm is refused.
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_ACCESS_TOKEN_EXPIRES=settings.jwt_expires_seconds,
        JWT_TOKEN_LOCATION=["headers"],
        # A token signed with our secret for another service (or by another issuer sharing it) is not ours:
        # each is stamped on issue and demanded on decode; a token without them is refused too.
        JWT_ENCODE_ISSUER=settings.jwt_issuer,
        JWT_DECODE_ISSUER=settings.jwt_issuer,
        JWT_ENCODE_AUDIENCE=settings.jwt_audience,
        JWT_DECODE_AUDIENCE=settings.jwt_audience,
    )
    JWTManager(app)
    app.after_request(_stamp_key_use)


def issue_token(*, user_id: str, username: str, role: str, generation: int = 0) -> str:
    """A bearer token for the user as they are now; `generation` is their `token_generation`."""
    return create_access_token(identity=user_id, additional_claims={"name": username, "role": role,
                                                                    "gen": generation})


class TokenGenerations:
    """Each user's token generation, as every service checks it on every bearer token.

    A user's generation rises when they are deactivated or their role or password changes, and a token
    carries the generation it was issued in: an older one is refused. Asking the database on every
    request would cost a round trip each, so a process reads the (few) users whose generation ever rose
    at most once every MAX_AGE seconds: a cut reaches every service within that time.
    """

    MAX_AGE = 1.0

    def __init__(self, session_factory, credentials: Credentials):
        self._sessions = session_factory
        self._credentials = credentials
        self._by_user: dict[str, int] = {}
        self._read_at = -math.inf

    def of(self, user_id: str) -> int:
        if time.monotonic() - self._read_at > self.MAX_AGE:
            self._read()
        return self._by_user.get(user_id, 0)

    def _read(self) -> None:
        # Claimed first: requests arriving while this one reads use the last answer instead of reading too.
        # A database that cannot answer is asked again after MAX_AGE, not by every request meanwhile.
        self._read_at = time.monotonic()
        try:
            with self._sessions() as session:
                self._by_user = self._credentials.raised_generations(session)
        except SQLAlchemyError:
            log.warning("could not read the users' token generations; using the last ones read", exc_info=True)


def hash_key(key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough; no salt or stretching is needed.
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A fresh key and its public prefix; the key is shown once and only its hash is stored."""
    prefix = secrets.token_hex(4)
    return f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# A key's last use is written at most this often: once a minute tells its owner whether it is still in
# use, and a write on every request would cost more than the answer is worth.
LAST_USED_EVERY = timedelta(minutes=1)


def _stamp_key_use(response):
    """Write the key's last use once its request has succeeded: a refused request writes nothing."""
    used = g.pop("api_key_used", None)
    if used is not None and response.status_code < 400:
        key_id, digest = used
        try:
            rt = runtime()
            with rt.db.transaction() as session:
                rt.credentials.record_key_use(session, key_id)
            rt.verified_keys.forget(digest)  # read again, stamped: the next stamp is due in a minute
        except SQLAlchemyError:
            # The request itself has committed: its answer stands, the stamp waits for the key's next use.
            log.warning("could not record the last use of API key %s", key_id, exc_info=True)
    return response


class VerifiedKeys:
    """API keys this process has read and found good in the last MAX_AGE seconds.

    Reading a key's row on every request cost a third of a single-row prediction's time. A key found good
    less than MAX_AGE ago is taken as it was then (its expiry is still checked on every use), so a
    revocation made in another process is refused here within MAX_AGE, as a withdrawn token is (see
    TokenGenerations); one made through this process is refused at once (identity calls `forget` once it
    has committed). A wrong or refused key is never kept: it is read again every time.
    """

    MAX_AGE = 1.0
    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._by_hash: dict[str, tuple[float, StoredKey]] = {}

    def get(self, key_hash: str) -> StoredKey | None:
        found = self._by_hash.get(key_hash)
        return found[1] if found is not None and time.monotonic() - found[0] <= self.MAX_AGE else None

    def keep(self, key_hash: str, row: StoredKey) -> None:
        if len(self._by_hash) >= self.MAX_KEYS:  # all of them stale within a second anyway
            self._by_hash.clear()
        self._by_hash[key_hash] = (time.monotonic(), row)

    def forget(self, key_hash: str | None = None) -> None:
        """Forget one key (read it again on its next use), or all of them."""
        if key_hash is None:
            self._by_hash.clear()
        else:
            self._by_hash.pop(key_hash, None)


def actor_from_api_key(session_factory, credentials: Credentials, verified: VerifiedKeys, key: str) -> Actor:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not _KEY_PREFIX.fullmatch(parts[1]):
        raise Unauthorized("The API key is malformed.")
    digest = hash_key(key)
    row = verified.get(digest)
    if row is None:
        with session_factory() as session:
            row = credentials.stored_key(session, parts[1])
        if row is None:
            raise Unauthorized("The API key is not valid.")
        owner = {"actor_id": str(row.owner_id), "actor": row.owner_name}
        if not hmac.compare_digest(row.key_hash, digest):
            raise KnownCallerRefused("The API key is not valid.", **owner)
        if row.revoked_at is not None:
            raise KnownCallerRefused("The API key has been revoked.", **owner)
        verified.keep(digest, row)
    if row.last_used_at is None or _aware(row.last_used_at) <= utcnow() - LAST_USED_EVERY:
        g.api_key_used = (row.id, digest)
    if row.expires_at is not None and _aware(row.expires_at) <= utcnow():
        raise KnownCallerRefused("The API key has expired.", actor_id=str(row.owner_id), actor=row.owner_name)
    return Actor(id=str(row.owner_id), name=row.owner_name, role=row.role, via="api_key")


@functools.lru_cache(maxsize=4096)
def _verified_claims(secret: str, issuer: str, audience: str, token: str) -> dict:
    # Checking a token's signature costs more than serving a cached read, and a token never changes:
    # verify each one once per secret, issuer and audience (decode_token checks them from the app's
    # config; they are arguments so that an app with other ones never reuses this answer).
    # Only successes are cached; expiry is checked on every use.
    return decode_token(token)


def actor_from_token(token: str, generations: TokenGenerations) -> Actor:
    try:
        config = current_app.config
        claims = _verified_claims(config["JWT_SECRET_KEY"], config["JWT_DECODE_ISSUER"],
                                  config["JWT_DECODE_AUDIENCE"], token)
    except Exception as exc:  # PyJWT and flask-jwt-extended raise many types; all mean "not valid"
        raise Unauthorized(f"The bearer token is not valid: {exc}.") from exc
    if claims.get("exp", 0) <= time.time():
        raise Unauthorized("The bearer token is not valid: Signature has expired.")
    if claims.get("type") != "access" or claims.get("role") not in ROLE_RANK or not claims.get("sub"):
        raise Unauthorized("The bearer token is not an access token.")
    if claims.get("gen", 0) < generations.of(claims["sub"]):
        # An expired token is not audited (every client meets one hourly); a withdrawn one was cut on purpose.
        raise KnownCallerRefused("The bearer token was withdrawn: its user was deactivated or their role or "
                                 "password changed. Log in again.",
                                 actor_id=claims["sub"], actor=claims.get("name", claims["sub"]))
    return Actor(id=claims["sub"], name=claims.get("name", claims["sub"]), role=claims["role"], via="token")


def authenticate(session_factory, credentials: Credentials, generations: TokenGenerations,
                 verified: VerifiedKeys) -> Actor:
    """Read the caller from `Authorization: Bearer` or `X-API-Key`; 401 if neither is valid."""
    api_key = request.headers.get("X-API-Key")
    if api_key:
        return actor_from_api_key(session_factory, credentials, verified, api_key)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send `Authorization: Bearer <token>` or `X-API-Key: <key>`.")
    return actor_from_token(token.strip(), generations)


def authorize(role: str) -> Actor:
    """The caller, authenticated, with at least `role`: 401 or 403 otherwise."""
    rt = runtime()
    actor = authenticate(rt.db.sessions, rt.credentials, rt.token_generations, rt.verified_keys)
    rt.throttle.admit_request(principal=actor.id)
    g.actor = actor  # before the role check, so that a refusal is audited under the caller
    if not actor.has_role(role):
        raise Forbidden(f"This needs the {role} role; you have {actor.role}.")
    return actor


def requires(role: str):
    """Decorate a view: authenticate the caller and demand at least `role`."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authorize(role)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def authorize_scrape(settings: Settings) -> None:
    """Let a Prometheus scrape through: public by setting, the scrape token, or an admin's credential."""
    if settings.metrics_public:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if settings.metrics_token and scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), settings.metrics_token.encode()):
        return
    authorize("admin")


def current_actor() -> Actor:
    return g.actor
