"""`Idempotency-Key` on creates: a request repeated with the same key answers what the first one did.

A create view decorated with `@idempotent` (under `@requires`, above `@blp.response`) and sent with an
`Idempotency-Key` header first claims the key for its principal by inserting a row, in the request's
one transaction; the view then runs, and its answer (status, body, content type) is written on that
row, so the create and its key commit together or not at all.

- Same principal, same key, same request (method, path, query and body digest): the stored answer is
  replayed, with `Idempotent-Replayed: true`; nothing runs and nothing is written.
- Same key, another request: 422.
- Two requests with one key at once: the second one's insert waits on the unique key until the first
  commits (Postgres waits on the index entry; SQLite on its write lock), then replays its answer, or
  runs itself if the first rolled back. The loser waits; it never creates a second time.
- Keys live a day (RETENTION): an older key counts as unseen and is claimed afresh, and beat deletes
  expired rows hourly (workers.maintenance.purge_idempotency_keys).
- Answers are stored encrypted (AES-GCM under a key derived from the app's JWT signing secret, bound to
  principal and key): the answer to an API key's creation holds the key itself, which is otherwise
  stored only hashed. The same request with a key whose answer no longer decrypts (the secret changed)
  is a 409: it was carried out, and running it again would create twice.

Multipart bodies (uploads, up to gigabytes) are digested while werkzeug parses them, with the multipart
boundary left out: clients choose a new random boundary for every send, retries included.
"""

from __future__ import annotations

import functools
import hashlib
import os
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Response, current_app, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.db import Base, select_for_update, utcnow
from shared.errors import Conflict, ValidationFailed
from shared.request_context import db_session

HEADER = "Idempotency-Key"
RETENTION = timedelta(days=1)
MAX_KEY_LENGTH = 255


class IdempotentRequest(Base):
    """A create made with an Idempotency-Key, and the answer it got."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    # NULL only inside the transaction that claimed the key: it commits with the answer written.
    status: Mapped[int | None] = mapped_column(sa.Integer)
    mimetype: Mapped[str | None] = mapped_column(sa.String(255))
    body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_idempotency_keys_created_at", "created_at"),)


class _BoundaryFreeDigest:
    """Reads through a multipart stream, hashing it with every occurrence of the boundary left out."""

    def __init__(self, stream, boundary: bytes):
        self._stream, self._boundary = stream, boundary
        self._digest, self._carry = hashlib.sha256(), b""

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        pending = (self._carry + data).replace(self._boundary, b"")
        # A boundary may straddle two reads: its start stays in the carry until the next one.
        split = max(0, len(pending) - len(self._boundary) + 1)
        self._digest.update(pending[:split])
        self._carry = pending[split:]
        return data

    def hexdigest(self) -> str:
        """The digest of what was read so far, its carried tail included."""
        final = self._digest.copy()
        final.update(self._carry)
        return final.hexdigest()


def _body_digest() -> str:
    boundary = request.mimetype_params.get("boundary")
    if request.mimetype == "multipart/form-data" and boundary:
        digesting = _BoundaryFreeDigest(request.stream, boundary.encode("latin-1"))
        request.__dict__["stream"] = digesting  # what werkzeug's form parser reads from
        request.files  # noqa: B018 - parses the whole body now, through the digest
        digesting.read()  # an epilogue the parser left
        return digesting.hexdigest()
    return hashlib.sha256(request.get_data(cache=True)).hexdigest()


def _fingerprint() -> str:
    parts = (request.method, request.path, request.query_string.decode("latin-1"), _body_digest())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _key() -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise ValidationFailed(f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                               errors={HEADER: ["Invalid key."]})
    return key


_NONCE_SIZE = 12


def _cipher() -> AESGCM:
    # The app's signing secret: the setting, or (unset, outside production) the one made for this process.
    secret = current_app.config["JWT_SECRET_KEY"].encode()
    return AESGCM(HKDF(algorithm=SHA256(), length=32, salt=None, info=b"modelyard idempotency answers").derive(secret))


def _seal(row: IdempotentRequest, body: bytes) -> bytes:
    nonce = os.urandom(_NONCE_SIZE)
    return nonce + _cipher().encrypt(nonce, body, f"{row.principal}\n{row.key}".encode())


def _unsealed(row: IdempotentRequest) -> bytes | None:
    sealed = row.body or b""
    try:
        return _cipher().decrypt(sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:], f"{row.principal}\n{row.key}".encode())
    except (InvalidTag, ValueError):
        return None


def _replay(stored: IdempotentRequest, fingerprint: str, body: bytes) -> Response:
    if stored.fingerprint != fingerprint:
        raise ValidationFailed(f"This {HEADER} was used for another request; use a new key for a new request.",
                               errors={HEADER: ["Already used for a different request."]})
    response = Response(body, status=stored.status, mimetype=stored.mimetype)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _stored(principal: str, key: str) -> sa.Select:
    return sa.select(IdempotentRequest).where(IdempotentRequest.principal == principal, IdempotentRequest.key == key)


def _insert_or_find(session: Session, claim: IdempotentRequest) -> IdempotentRequest | None:
    """Insert the claim; None when it went in, else the row that holds the key (committed meanwhile)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite: take its one write lock first (a write that changes nothing), so that looking and inserting
        # are one step. (Its SAVEPOINT, released, would commit the claim on its own, answer still unwritten.)
        stored = session.scalar(select_for_update(session, _stored(claim.principal, claim.key)))
        if stored is None:
            session.add(claim)
            session.flush()
        return stored
    try:
        # Postgres: a concurrent claim of the same key waits here on the unique index until the first
        # transaction ends, then fails (it committed) or goes in (it rolled back).
        with session.begin_nested():
            session.add(claim)
        return None
    except IntegrityError:
        stored = session.scalar(select_for_update(session, _stored(claim.principal, claim.key)))
        # Gone again only if it expired and was purged in between: then nobody holds the key.
        return stored if stored is not None else _insert_or_find(session, claim)


def _claim(session: Session, principal: str, key: str, fingerprint: str) -> IdempotentRequest | Response:
    """The new row claiming the key, or the replay of the answer stored under it."""
    now = utcnow()
    claim = IdempotentRequest(principal=principal, key=key, fingerprint=fingerprint, created_at=now)
    stored = _insert_or_find(session, claim)
    if stored is None:
        return claim
    created = stored.created_at if stored.created_at.tzinfo else stored.created_at.replace(tzinfo=timezone.utc)
    if created > now - RETENTION:  # SQLite hands times back naive
        body = _unsealed(stored)
        if body is None and stored.fingerprint == fingerprint:
            # Sealed under a secret since changed: the request was carried out, but its answer is lost.
            # Doing it again would create twice, which is what the key is there to prevent.
            raise Conflict(f"This request was already carried out under this {HEADER}, and its answer can no "
                           "longer be read (the platform's secret changed); look the result up instead of "
                           "repeating it.", errors={HEADER: ["Already used; its answer is unreadable."]})
        return _replay(stored, fingerprint, body or b"")
    # Expired: claimed afresh.
    stored.fingerprint, stored.created_at, stored.status, stored.body = fingerprint, now, None, None
    return stored


def idempotent(view):
    """Decorate a create view: with an Idempotency-Key, a repeat of the same request replays the first answer."""

    # Imported here: the maintenance worker imports this module for purge_expired, without the web stack.
    from shared.auth import current_actor

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = _key()
        if key is None:
            return view(*args, **kwargs)
        actor = current_actor()
        claimed = _claim(db_session(), actor.id or actor.name, key, _fingerprint())
        if isinstance(claimed, Response):
            return claimed
        response = current_app.make_response(view(*args, **kwargs))
        claimed.status, claimed.mimetype = response.status_code, response.mimetype
        claimed.body = _seal(claimed, response.get_data())
        return response

    return wrapper


def purge_expired(*, session: Session) -> int:
    """Delete keys older than RETENTION; how many went."""
    result = session.execute(sa.delete(IdempotentRequest).where(IdempotentRequest.created_at < utcnow() - RETENTION))
    return result.rowcount
