"""Checking a user's credentials before a token is issued."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.identity.tables import User
from services.identity.passwords import decoy_hash, verify_password
from shared.auth import KnownCallerRefused
from shared.db import utcnow
from shared.errors import Unauthorized
from shared.throttling import Throttle

BAD_CREDENTIALS = "The user name or password is wrong, or the account is inactive."


def check_credentials(*, session: Session, throttle: Throttle, username: str, password: str,
                      address: str | None) -> User:
    """The active user with these credentials; one 401 for every way of failing.

    An unknown name still costs one scrypt, so timing does not tell which names exist. Logging in
    is not a change to audit; it only stamps `last_login_at`. A refusal of a user who exists is
    audited as denied (the answer is the same 401 either way).

    Too many recent failures for the name or the client's address refuse the login (429) before any
    password is hashed, so a flood of guesses costs no scrypt, and a right password waits too.
    """
    throttle.admit_login(username=username, address=address)
    user = session.scalar(sa.select(User).where(User.username == username))
    matches = verify_password(password, user.password_hash if user else decoy_hash())
    if user is not None and matches and user.is_active:
        user.last_login_at = utcnow()
        return user
    throttle.count_failed_login(username=username, address=address)
    if user is None:
        raise Unauthorized(BAD_CREDENTIALS)
    raise KnownCallerRefused(BAD_CREDENTIALS, actor_id=str(user.id), actor=user.username)
