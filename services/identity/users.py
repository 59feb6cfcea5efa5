"""Use cases for users: create, read, list, change, and the first admin at start-up."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.identity.tables import ApiKey, User
from services.identity.passwords import hash_password
from shared.audit import record_change
from shared.auth import ROLE_RANK, ROLES, Actor
from shared.db import select_for_update, utcnow
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.pagination import Page, Sorting, paginate
from shared.schemas import normalise_name

MIN_PASSWORD_LENGTH = 8
USER_SORTING = Sorting(
    columns={"username": User.username, "created_at": User.created_at, "role": User.role},
    tiebreaker=User.id,
    default="-created_at",  # newest first, as every list
)


def user_summary(user: User) -> dict:
    """What the audit log keeps of a user: never the password or its hash."""
    return {"username": user.username, "role": user.role, "is_active": user.is_active}


def _check_role(role: str) -> None:
    if role not in ROLE_RANK:
        raise ValidationFailed(f"Unknown role {role!r}.", errors={"role": [f"Must be one of: {', '.join(ROLES)}."]})


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed("The password is too short.",
                               errors={"password": [f"Must be at least {MIN_PASSWORD_LENGTH} characters."]})


def create_user(*, session: Session, actor: Actor | None, request_id: str, username: str, password: str,
                role: str) -> User:
    """Create a user with a hashed password; 409 if the name is taken."""
    _check_role(role)
    _check_password(password)
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"A user named {username!r} already exists.")
    user = User(username=username, password_hash=hash_password(password), role=role, is_active=True)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        # Another request created the same name between our check and our insert.
        raise Conflict(f"A user named {username!r} already exists.") from None
    record_change(session, actor=actor, action="user.created", resource_type="user", resource_id=user.id,
                  request_id=request_id, after=user_summary(user))
    return user


def get_user(*, session: Session, user_id: uuid.UUID | str) -> User:
    """The user with this id; 404 if there is none."""
    try:
        user = session.get(User, uuid.UUID(str(user_id)))
    except ValueError:
        user = None
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def list_users(*, session: Session, limit: int, cursor: str | None = None, sort: str | None = None,
               role: str | None = None, is_active: bool | None = None) -> Page:
    """A page of users, optionally only those with a role or activity state."""
    statement = sa.select(User)
    if role is not None:
        statement = statement.where(User.role == role)
    if is_active is not None:
        statement = statement.where(User.is_active.is_(is_active))
    return paginate(session, statement, sorting=USER_SORTING, limit=limit, cursor=cursor, sort=sort)


def _other_active_admins(session: Session, user: User) -> int:
    # Locking the admins' rows makes two concurrent demotions of the last two admins take turns.
    admins = session.scalars(
        select_for_update(session, sa.select(User.id).where(User.role == "admin", User.is_active.is_(True)))
    ).all()
    return sum(1 for admin_id in admins if admin_id != user.id)


def _revoke_keys_beyond(session: Session, user: User, *, role: str | None) -> int:
    """Revoke the user's live keys above `role` (all of them when `role` is None); return how many."""
    keys = session.scalars(
        sa.select(ApiKey).where(ApiKey.owner_id == user.id, ApiKey.revoked_at.is_(None))
    ).all()
    revoked = 0
    for key in keys:
        if role is None or ROLE_RANK[key.role] > ROLE_RANK[role]:
            key.revoked_at = utcnow()
            revoked += 1
    return revoked


def update_user(*, session: Session, actor: Actor, request_id: str, user_id: uuid.UUID | str,
                role: str | None = None, is_active: bool | None = None, password: str | None = None) -> User:
    """Change a user's role, activity or password.

    A deactivated user's API keys are revoked, and a demoted user's keys above the new role, so no
    key outlives the rights of its owner. Deactivation and any change of role or password also
    withdraw the user's bearer tokens (they log in again). The last active admin cannot be demoted or
    deactivated.
    """
    user = get_user(session=session, user_id=user_id)
    before = user_summary(user)
    if role is not None:
        _check_role(role)
    if password is not None:
        _check_password(password)
    losing_admin = user.role == "admin" and user.is_active and (
        (role is not None and role != "admin") or is_active is False
    )
    if losing_admin and _other_active_admins(session, user) == 0:
        raise Conflict("This is the last active admin; make another admin first.")
    after_extra: dict = {}
    revoked = 0
    withdraw_tokens = password is not None
    if role is not None and role != user.role:
        if ROLE_RANK[role] < ROLE_RANK[user.role]:
            revoked += _revoke_keys_beyond(session, user, role=role)
        user.role = role
        withdraw_tokens = True
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        if not is_active:
            revoked += _revoke_keys_beyond(session, user, role=None)
            withdraw_tokens = True
    if revoked:
        after_extra["api_keys_revoked"] = revoked
    if password is not None:
        user.password_hash = hash_password(password)
        after_extra["password_changed"] = True
    if withdraw_tokens:
        user.token_generation += 1
        after_extra["tokens_withdrawn"] = True
    after = user_summary(user)
    if after == before and not after_extra:
        return user
    session.flush()
    record_change(session, actor=actor, action="user.updated", resource_type="user", resource_id=user.id,
                  request_id=request_id, before=before, after={**after, **after_extra})
    return user


def ensure_admin(*, session: Session, username: str, password: str) -> tuple[User, bool]:
    """The first admin, created at start-up unless a user with that name exists (idempotent).

    Returns the user and whether it was created now, so the launcher prints a password only once.
    """
    username = normalise_name(username)  # as logging in will spell it (MODELYARD_ADMIN_USERNAME may be NFD)
    existing = session.scalar(sa.select(User).where(User.username == username))
    if existing is not None:
        return existing, False
    user = create_user(session=session, actor=None, request_id="startup", username=username, password=password,
                       role="admin")
    return user, True
