"""Credentials for tests: users of a role and their token or API key headers, made in one call.

Users are made through identity's own use cases (so passwords are hashed and the audit log gets a
`user.created` row by `system`), and tokens with the app's own JWT settings.
"""

from __future__ import annotations

import uuid

from flask import Flask

from services.identity.keys import NewApiKey, create_api_key
from services.identity.tables import User
from services.identity.users import create_user
from shared.auth import Actor, issue_token

PASSWORD = "correct horse battery staple"
SETUP_REQUEST_ID = "test-setup"


def make_user(app: Flask, role: str, *, username: str | None = None, password: str = PASSWORD,
              ) -> tuple[User, dict[str, str]]:
    """A new active user with `role`, and the `Authorization: Bearer` headers for it."""
    with app.extensions["modelyard"].db.transaction() as session:
        user = create_user(session=session, actor=None, request_id=SETUP_REQUEST_ID,
                           username=username or f"{role}-{uuid.uuid4().hex[:8]}", password=password, role=role)
    return user, token_headers(app, user)


def token_headers(app: Flask, user: User) -> dict[str, str]:
    with app.app_context():
        token = issue_token(user_id=str(user.id), username=user.username, role=user.role,
                            generation=user.token_generation)
    return {"Authorization": f"Bearer {token}"}


def headers_for(app: Flask, role: str) -> dict[str, str]:
    """Bearer headers of a fresh user with `role`: the quick way in for other services' tests."""
    return make_user(app, role)[1]


def actor_of(user: User) -> Actor:
    return Actor(id=str(user.id), name=user.username, role=user.role, via="token")


def make_api_key(app: Flask, role: str, *, owner: User | None = None, expires_in_days: int | None = None,
                 ) -> tuple[NewApiKey, dict[str, str]]:
    """An API key with `role` (owned by a fresh user of that role unless `owner` is given) and its headers."""
    if owner is None:
        owner, _ = make_user(app, role)
    with app.extensions["modelyard"].db.transaction() as session:
        created = create_api_key(session=session, actor=actor_of(owner), request_id=SETUP_REQUEST_ID,
                                 name=f"{role} key", role=role, expires_in_days=expires_in_days)
    return created, {"X-API-Key": created.key}


def api_key_headers(app: Flask, role: str) -> dict[str, str]:
    """`X-API-Key` headers of a fresh key with `role`."""
    return make_api_key(app, role)[1]
