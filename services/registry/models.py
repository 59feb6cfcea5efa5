"""Use cases for registered models: create, read, list, update, archive, delete."""

from __future__ import annotations

import uuid
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from services.registry import status as lifecycle
from services.registry.lineage import forget_model_versions
from services.registry.tables import ModelVersion, RegisteredModel
from shared import audit
from shared.auth import Actor
from shared.cache import Cache
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.db import insert_queued, loaded, queue_insert, select_for_update, utcnow
from shared.events.outbox import emit
from shared.pagination import Page, Sorting, paginate
from shared.schemas import normalise_name

PRODUCER = "registry"
MODEL_SORTING = Sorting(
    columns={"name": RegisteredModel.name, "created_at": RegisteredModel.created_at,
             "updated_at": RegisteredModel.updated_at},
    tiebreaker=RegisteredModel.id,
    default="-created_at",
)
EDITABLE = ("description", "hyperparameters", "features", "sensitive_features", "target_variable", "tags", "metadata",
            "status")


ModelRef = uuid.UUID | str  # a model's id, or (a str only) its id or exact name
# Where a read's path takes a version number, this names the highest number that exists.
LATEST = "latest"


def model_cache_key(model_id: uuid.UUID) -> str:
    """The cache key of a model's representation; every write to it, its versions or aliases drops it."""
    return f"registry:model:{model_id}"


def _as_id(model_ref: ModelRef) -> uuid.UUID | None:
    """The id a ref spells in the form ids are written (any case), else None: uuid.UUID also reads
    "{...}", "urn:uuid:..." and bare hex, which are names here, not another spelling of an id."""
    if isinstance(model_ref, uuid.UUID):
        return model_ref
    try:
        model_id = uuid.UUID(model_ref)
    except ValueError:
        return None
    return model_id if str(model_id) == model_ref.lower() else None


def _not_found(model_ref: ModelRef) -> NotFound:
    return NotFound(f"No model has the id or name {str(model_ref)!r}.")


def _find(session: Session, model_ref: ModelRef, for_update: bool) -> RegisteredModel | None:
    def first(condition: sa.ColumnElement[bool]) -> RegisteredModel | None:
        statement = sa.select(RegisteredModel).where(condition)
        if for_update:
            statement = select_for_update(session, statement)
        return session.scalar(statement)

    model_id = _as_id(model_ref)
    model = first(RegisteredModel.id == model_id) if model_id is not None else None
    # A name may look like a UUID: it still names its model when no model has that id.
    if model is None and isinstance(model_ref, str):
        model = first(RegisteredModel.name == normalise_name(model_ref))  # names are stored NFC
    return model


def get_model(*, session: Session, model_ref: ModelRef, for_update: bool = False) -> RegisteredModel:
    """The model `model_ref` names, or NotFound: a str is an id when a model has that id, else a name;
    a UUID (as events carry) is only ever an id."""
    model = _find(session, model_ref, for_update)
    if model is None:
        raise _not_found(model_ref)
    return model


def cached_model(*, sessions: Callable[[], Session], cache: Cache, model_ref: str,
                 render: Callable[[RegisteredModel], dict]) -> dict:
    """The model's representation (`render`'s), from the cache: an id costs no query when cached, a name
    one indexed look-up of its id. `sessions` gives the request's session, asked for only when the
    cache cannot answer: a cached hit by id then opens none (opening, committing and closing one was
    a fifth of the hit's time)."""
    model_id = _as_id(model_ref)
    if model_id is not None:
        def by_id() -> dict | None:
            model = _find(sessions(), model_id, False)
            # None is never cached: no model has this id, and the ref may still be a name.
            return None if model is None else render(model)

        body = cache.get_or_load(model_cache_key(model_id), by_id)
        if body is not None:
            return body
    named_id = sessions().scalar(sa.select(RegisteredModel.id)
                                 .where(RegisteredModel.name == normalise_name(model_ref)))
    if named_id is None:
        raise _not_found(model_ref)
    return cache.get_or_load(model_cache_key(named_id),
                             lambda: render(get_model(session=sessions(), model_ref=named_id)))


def get_version(*, session: Session, model_ref: ModelRef, number: int | str, for_update: bool = False) -> ModelVersion:
    """Version `number` of the model, or (LATEST) its highest-numbered one; NotFound if there is none.
    `for_update` locks the model's row, which every write to its versions and aliases takes first."""
    model = get_model(session=session, model_ref=model_ref, for_update=for_update)
    if number == LATEST:
        if model.latest_version is None:
            raise NotFound(f"Model {model.name!r} has no versions.")
        number = model.latest_version
    version = session.scalar(sa.select(ModelVersion).where(
        ModelVersion.model_id == model.id, ModelVersion.number == number))
    if version is None:
        raise NotFound(f"Model {model.name!r} has no version {number}.")
    return version


def summary(model: RegisteredModel) -> dict[str, Any]:
    """What the audit log and events keep of a model: the fields a user edits."""
    return {
        "name": model.name, "type": model.type, "framework": model.framework, "status": model.status,
        "description": model.description, "hyperparameters": model.hyperparameters, "features": model.features,
        "sensitive_features": model.sensitive_features, "target_variable": model.target_variable, "tags": model.tags,
        "metadata": model.extra_metadata,
    }


def _changed(session: Session, model: RegisteredModel, action: str, actor: Actor, request_id: str,
             before: dict | None, changes: dict | None = None) -> None:
    """The audit row and the event (of the same name) for a change to a model, in its transaction."""
    audit.record_change(session, actor=actor, action=action, resource_type="model", resource_id=model.id,
                        request_id=request_id, before=before, after=summary(model))
    emit(session, action, {"model_id": model.id, "name": model.name, "status": model.status,
                           "actor": actor.name, "changes": changes or {},
                           "sensitive_features": model.sensitive_features}, producer=PRODUCER)


def _checked_sensitive(features: list[str], sensitive: list[str], *, dropped_by_features: bool = False) -> list[str]:
    """`sensitive` without repeats, when each is one of `features`; else ValidationFailed naming the others.
    `dropped_by_features`: the request changed `features` and not the list, so the error is the features'."""
    sensitive = list(dict.fromkeys(sensitive))
    unknown = [name for name in sensitive if name not in features]
    if not unknown:
        return sensitive
    named = ", ".join(repr(name) for name in unknown)
    if dropped_by_features:
        # Dropping a sensitive feature silently would let its values be stored in clear were it listed again.
        message = (f"These features are sensitive and would no longer be features: {named}. Remove them from "
                   "sensitive_features in the same request to drop them.")
        raise ValidationFailed(message, errors={"features": [message]})
    message = f"Not among the model's features: {named}. A sensitive feature must be one of `features`."
    raise ValidationFailed(message, errors={"sensitive_features": [message]})


def create_model(*, session: Session, actor: Actor, request_id: str, name: str, type: str, framework: str,
                 description: str = "", hyperparameters: dict | None = None, features: list | None = None,
                 sensitive_features: list | None = None, target_variable: str | None = None,
                 tags: dict | None = None, metadata: dict | None = None) -> RegisteredModel:
    """Register a new model (status `registered`); a name already taken is a Conflict."""
    now = utcnow()
    sensitive_features = _checked_sensitive(features or [], sensitive_features or [])
    values = dict(
        id=uuid.uuid4(), name=name, type=type, framework=framework, description=description,
        status=lifecycle.REGISTERED, hyperparameters=hyperparameters or {}, features=features or [],
        sensitive_features=sensitive_features, target_variable=target_variable, tags=tags or {},
        extra_metadata=metadata or {}, created_by=actor.name,
        created_by_id=actor.id, latest_version=None, version_counter=0, status_before_training=None,
        created_at=now, updated_at=now,
    )
    # The busiest write of the platform: the model's row, its audit row and its event go to the database
    # in one statement (shared.db.queue_insert), not through the unit of work's flush, which cost more CPU
    # than the inserts. The model is not added to the session; nothing later in the request changes it.
    queue_insert(session, RegisteredModel.__table__,
                 {column.name: values[attribute] for attribute, column in _COLUMNS.items()})
    model = loaded(RegisteredModel, **values, alias_rows=[])  # a new model has no aliases
    _changed(session, model, "model.created", actor, request_id, None)
    try:
        # The unique index decides (no racy look-up first). No savepoint: a conflict ends the transaction.
        # A create writes nothing else, so its one statement may commit itself (`alone`).
        insert_queued(session, alone=True)
    except IntegrityError:
        raise Conflict(f"A model named {name!r} already exists.", errors={"name": ["Already taken."]}) from None
    return model


_COLUMNS = {prop.key: prop.columns[0] for prop in sa.inspect(RegisteredModel).column_attrs}


def list_models(*, session: Session, limit: int, cursor: str | None = None, sort: str | None = None,
                q: str | None = None, type: str | None = None, framework: str | None = None,
                status: str | None = None, tag: list[str] | None = None) -> Page:
    """One page of models matching every given filter."""
    statement = sa.select(RegisteredModel).options(selectinload(RegisteredModel.alias_rows))
    if q:
        # The text is data, never pattern syntax: escape LIKE's wildcards before wrapping in %...%.
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(sa.or_(RegisteredModel.name.ilike(pattern, escape="\\"),
                                           RegisteredModel.description.ilike(pattern, escape="\\")))
        # How many rows match decides between the trigram indexes and walking the sort order.
        statement = statement.execution_options(plan_each_run=True)
    if type:
        statement = statement.where(RegisteredModel.type == type)
    if framework:
        statement = statement.where(RegisteredModel.framework == framework)
    if status:
        statement = statement.where(RegisteredModel.status == status)
    for pair in tag or ():
        key, _, value = pair.partition(":")
        statement = statement.where(RegisteredModel.tags[key].as_string() == value)
    return paginate(session, statement, sorting=MODEL_SORTING, limit=limit, cursor=cursor, sort=sort)


def update_model(*, session: Session, cache: Cache, actor: Actor, request_id: str, model_ref: ModelRef,
                 changes: dict[str, Any], reported: bool = False) -> RegisteredModel:
    """Apply a partial update; a status change must follow the lifecycle (InvalidTransition), unless it is
    `reported`: a fact another service observed (a version went live), which the status must show."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    model = get_model(session=session, model_ref=model_ref, for_update=True)
    before = summary(model)
    if "status" in changes and not reported:
        lifecycle.check_transition(model.status, changes["status"])
    if "features" in changes or "sensitive_features" in changes:
        changes = {**changes, "sensitive_features": _checked_sensitive(
            changes.get("features", model.features), changes.get("sensitive_features", model.sensitive_features),
            dropped_by_features="sensitive_features" not in changes)}
    for field, value in changes.items():
        setattr(model, "extra_metadata" if field == "metadata" else field, value)
    after = summary(model)
    diff = {field: after[field] for field in changes if before[field] != after[field]}
    if not diff:
        return model
    model.updated_at = utcnow()
    if "status" in diff:
        # Set on every move into `training` and cleared on every move out, so while a model trains it names
        # the status the training found it in: where a failed or cancelled training sends it back
        # (services.registry.handlers).
        model.status_before_training = before["status"] if model.status == lifecycle.TRAINING else None
    cache.invalidate_on_commit(session, model_cache_key(model.id))
    archived = diff.get("status") == lifecycle.ARCHIVED
    action = "model.archived" if archived else "model.updated"
    _changed(session, model, action, actor, request_id, before, diff)
    return model


def archive_model(*, session: Session, cache: Cache, actor: Actor, request_id: str,
                  model_ref: ModelRef) -> RegisteredModel:
    """Move a model to `archived` (from any status); archiving twice changes nothing."""
    return update_model(session=session, cache=cache, actor=actor, request_id=request_id, model_ref=model_ref,
                        changes={"status": lifecycle.ARCHIVED})


def delete_model(*, session: Session, cache: Cache, actor: Actor, request_id: str, model_ref: ModelRef) -> None:
    """Delete a model with its versions and aliases. Artifact blobs stay: other rows may share them."""
    model = get_model(session=session, model_ref=model_ref, for_update=True)
    before = summary(model)
    version_ids = list(session.scalars(sa.select(ModelVersion.id).where(ModelVersion.model_id == model.id)))
    forget_model_versions(session=session, version_ids=version_ids)
    audit.record_change(session, actor=actor, action="model.deleted", resource_type="model", resource_id=model.id,
                        request_id=request_id, before={**before, "versions": len(version_ids)})
    emit(session, "model.deleted", {"model_id": model.id, "name": model.name, "status": model.status,
                                    "actor": actor.name, "changes": {"versions": len(version_ids)}}, producer=PRODUCER)
    session.execute(sa.delete(RegisteredModel).where(RegisteredModel.id == model.id))
    cache.invalidate_on_commit(session, model_cache_key(model.id))
