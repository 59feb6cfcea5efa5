"""Use cases for datasets: register an uploaded CSV with its inferred schema, read, list.

A dataset is identified by its name and the sha256 of its bytes, as MLflow identifies datasets by
name and digest. Uploading the same bytes under the same name again returns the dataset already
registered (nothing new is written); the same bytes under another name make a second dataset
record. Either way the artifact store keeps one copy of the bytes, addressed by their sha256.

Deleting a dataset deletes its record only; see `delete_dataset` for why the bytes stay.
"""

from __future__ import annotations

import uuid
from pathlib import PurePath
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.registry import lineage
from services.registry.csv_profile import profile_csv
from services.registry.tables import Dataset
from services.registry.models import PRODUCER
from shared import audit
from shared.artifacts import ArtifactStore
from shared.auth import Actor
from shared.db import select_for_update
from shared.errors import Conflict, NotFound
from shared.events.outbox import emit
from shared.pagination import Page, Sorting, paginate
from shared.schemas import name_problem, normalise_name

NAMED_IN_CONFLICT = 10  # users of a dataset a refused delete names; a count stands for the rest

DATASET_SORTING = Sorting(
    columns={"created_at": Dataset.created_at, "name": Dataset.name},
    tiebreaker=Dataset.id,
    default="-created_at",
)


def default_name(filename: str | None) -> str:
    """The uploaded file's name without its extension, as a dataset name when none is given (normalised,
    without the characters a name given as `name` is refused for: nobody chose them as a name)."""
    stem = "".join(char for char in PurePath(filename or "").stem if name_problem(char) is None).strip()
    return normalise_name(stem)[:255] or "dataset"


def register_dataset(*, session: Session, artifacts: ArtifactStore, actor: Actor, request_id: str,
                     stream: BinaryIO, name: str, description: str = "", max_columns: int) -> tuple[Dataset, bool]:
    """Profile the CSV (at most `max_columns` columns), store its bytes once, and return (dataset, created)."""
    profile = profile_csv(stream, max_columns=max_columns)  # rejects bad files before a single byte is stored
    existing = _find(session, name, profile.sha256)
    stream.seek(0)
    # Stored even when a record exists: the store deduplicates, and replaces a damaged copy.
    artifacts.put_stream(stream)
    if existing is not None:
        return existing, False
    dataset = Dataset(name=name, description=description, sha256=profile.sha256, size=profile.size,
                      rows=profile.rows, columns=len(profile.columns), schema=profile.columns,
                      created_by=actor.name, created_by_id=actor.id)
    session.add(dataset)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # The same upload raced us and won: answer with its record, as for any repeat upload.
        return _find(session, name, profile.sha256), False
    audit.record_change(session, actor=actor, action="dataset.registered", resource_type="dataset",
                        resource_id=dataset.id, request_id=request_id, before=None,
                        after={"name": name, "sha256": profile.sha256, "rows": profile.rows,
                               "columns": len(profile.columns), "size": profile.size})
    emit(session, "dataset.registered", {"dataset_id": dataset.id, "name": name, "sha256": profile.sha256,
                                         "rows": profile.rows, "actor": actor.name}, producer=PRODUCER)
    return dataset, True


def _find(session: Session, name: str, sha256: str) -> Dataset | None:
    return session.scalar(sa.select(Dataset).where(Dataset.name == name, Dataset.sha256 == sha256))


def get_dataset(*, session: Session, dataset_id: uuid.UUID) -> Dataset:
    """The dataset with this id, or NotFound."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"No dataset with id {dataset_id}.")
    return dataset


def list_datasets(*, session: Session, limit: int, cursor: str | None = None, sort: str | None = None,
                  name: str | None = None, sha256: str | None = None) -> Page:
    """One page of datasets, newest first, optionally only those with this name or digest."""
    statement = sa.select(Dataset)
    if name:
        statement = statement.where(Dataset.name == name)
    if sha256:
        statement = statement.where(Dataset.sha256 == sha256)
    return paginate(session, statement, sorting=DATASET_SORTING, limit=limit, cursor=cursor, sort=sort)


def delete_dataset(*, session: Session, actor: Actor, request_id: str, dataset_id: uuid.UUID) -> None:
    """Delete a dataset's record (admins), refused while any version's lineage names it.

    The stored bytes stay. The store is content-addressed and shared: other datasets and version artifacts
    may have the same sha256, and training jobs still queued on this dataset read its bytes by digest. A
    check for other users before deleting them would race an upload of the same bytes, which reuses the
    stored copy without writing it and whose row is not committed yet; the bytes would vanish under it.
    Reclaiming unreferenced blobs is a sweep's job, with a grace period.
    """
    # Locked so that a version naming the dataset cannot be registered between the check and the delete
    # (registration takes a key-share lock on the dataset row).
    dataset = session.scalar(select_for_update(session, sa.select(Dataset).where(Dataset.id == dataset_id)))
    if dataset is None:
        raise NotFound(f"No dataset with id {dataset_id}.")
    users = lineage.dataset_users(session=session, dataset_id=dataset.id)
    if users:
        named = ", ".join(users[:NAMED_IN_CONFLICT])
        more = f" and {len(users) - NAMED_IN_CONFLICT} more" if len(users) > NAMED_IN_CONFLICT else ""
        raise Conflict(f"Dataset {dataset.name!r} is in the lineage of {named}{more}; delete those first.")
    audit.record_change(session, actor=actor, action="dataset.deleted", resource_type="dataset",
                        resource_id=dataset.id, request_id=request_id,
                        before={"name": dataset.name, "sha256": dataset.sha256, "rows": dataset.rows,
                                "columns": dataset.columns, "size": dataset.size})
    emit(session, "dataset.deleted", {"dataset_id": dataset.id, "name": dataset.name, "sha256": dataset.sha256,
                                      "actor": actor.name}, producer=PRODUCER)
    session.delete(dataset)
