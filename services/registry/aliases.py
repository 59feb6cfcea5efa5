"""Use cases for aliases: named, movable pointers to a model's versions (champion, challenger ...)."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.registry.tables import ModelAlias, ModelVersion, RegisteredModel
from services.registry.models import PRODUCER, ModelRef, get_model, model_cache_key
from services.registry.status import VERSION_ARCHIVED
from shared import audit
from shared.auth import Actor
from shared.cache import Cache
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events.outbox import emit

ALIAS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def _check_name(alias: str) -> None:
    if not ALIAS_NAME.fullmatch(alias):
        raise ValidationFailed(f"{alias!r} is not a valid alias name.",
                               errors={"alias": ["Lowercase letter first, then up to 63 of a-z, 0-9, _ and -."]})


def _no_alias(model: RegisteredModel, alias: str) -> NotFound:
    # Also for a name no alias can have (e.g. holding a NUL, which Postgres could not even compare).
    return NotFound(f"Model {model.name!r} has no alias {alias!r}.")


def _record(session: Session, *, actor: Actor, request_id: str, model_id: uuid.UUID, alias: str,
            version: int | None, previous: int | None) -> None:
    """The audit row and the event of a set (`version`) or removed (None) alias, in its transaction."""
    action = "model_version.alias_set" if version is not None else "model_version.alias_removed"
    audit.record_change(session, actor=actor, action=action, resource_type="model_alias",
                        resource_id=f"{model_id}/{alias}", request_id=request_id,
                        before=None if previous is None else {"alias": alias, "version": previous},
                        after=None if version is None else {"alias": alias, "version": version})
    payload = {"model_id": model_id, "alias": alias, "previous_version": previous, "actor": actor.name}
    if version is not None:
        payload["version"] = version
    emit(session, action, payload, producer=PRODUCER)


def resolve_alias(*, session: Session, model_ref: ModelRef, alias: str) -> ModelVersion:
    """The version the alias points at (as `models:/name@alias` resolves in MLflow), or NotFound."""
    model = get_model(session=session, model_ref=model_ref)
    if not ALIAS_NAME.fullmatch(alias):
        raise _no_alias(model, alias)
    version = session.scalar(
        sa.select(ModelVersion)
        .join(ModelAlias, sa.and_(ModelAlias.model_id == ModelVersion.model_id, ModelAlias.version == ModelVersion.number))
        .where(ModelAlias.model_id == model.id, ModelAlias.alias == alias))
    if version is None:
        raise _no_alias(model, alias)
    return version


def set_alias(*, session: Session, cache: Cache, actor: Actor, request_id: str, model_ref: ModelRef, alias: str,
              version: int) -> ModelVersion:
    """Point `alias` at `version` (creating or moving it) and return that version; pointing it where it
    already points changes nothing."""
    _check_name(alias)
    model = get_model(session=session, model_ref=model_ref, for_update=True)
    target = session.scalar(sa.select(ModelVersion).where(ModelVersion.model_id == model.id,
                                                          ModelVersion.number == version))
    if target is None:
        raise ValidationFailed(f"Model {model.name!r} has no version {version}.",
                               errors={"version": ["No such version of this model."]})
    if target.status == VERSION_ARCHIVED:
        raise Conflict(f"Version {version} of model {model.name!r} is archived; set its status to ready before "
                       "pointing an alias at it.", errors={"version": ["This version is archived."]})
    row = session.get(ModelAlias, (model.id, alias))
    previous = row.version if row else None
    if previous == version:
        return target
    if row is None:
        session.add(ModelAlias(model_id=model.id, alias=alias, version=version))
    else:
        row.version = version
    session.flush()
    _record(session, actor=actor, request_id=request_id, model_id=model.id, alias=alias, version=version,
            previous=previous)
    cache.invalidate_on_commit(session, model_cache_key(model.id))
    return target


def remove_alias(*, session: Session, cache: Cache, actor: Actor, request_id: str, model_ref: ModelRef,
                 alias: str) -> None:
    """Delete the alias (NotFound if it does not exist); the version it pointed at stays."""
    model = get_model(session=session, model_ref=model_ref, for_update=True)
    row = session.get(ModelAlias, (model.id, alias)) if ALIAS_NAME.fullmatch(alias) else None
    if row is None:
        raise _no_alias(model, alias)
    previous = row.version
    session.delete(row)
    session.flush()
    _record(session, actor=actor, request_id=request_id, model_id=model.id, alias=alias, version=None,
            previous=previous)
    cache.invalidate_on_commit(session, model_cache_key(model.id))
