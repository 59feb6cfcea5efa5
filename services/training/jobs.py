"""Use cases for training jobs: validate and queue a request, read, list, cancel, list trials.

Everything that can be checked before queuing is checked here (the model, the data's columns and
class counts, the estimator, the search space, the splits and folds), so a request that would fail
for a reason visible now is a 422 naming the field, and nothing is stored or queued.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.training.data_checks import TrainingDataError, check_class_counts
from services.training.estimators import resolve_estimator
from services.training.job_state import end_job, lock_job
from services.training.metrics import METRICS, default_metric
from services.training.tables import CANCELLED, FINISHED_JOB_STATUSES, QUEUED, REGISTERING, TrainingJob, Trial
from services.training.search_space import (
    HyperparameterError, SearchSpaceError, parse_fixed_params, parse_search_space,
)
from services.training.service import QUEUE, START_TRAINING
from services.training.spec import (
    Augmentation, FeatureSelection, Imputation, Preprocessing, TrainingSpec, spec_errors,
)
from shared import audit
from shared.auth import Actor
from shared.config import Settings
from shared.csv_format import NULL_TOKENS, header_problem
from shared.db import utcnow
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.metric_names import canonical_metric
from shared.pagination import Page, Sorting, paginate
from shared.registry_client import RegistryClient
from shared.tasks import enqueue_after_commit

TRAINABLE_TYPES = ("classification", "regression")
MAX_COUNTED_VALUES = 100
JOB_SORTING = Sorting(columns={"created_at": TrainingJob.created_at}, tiebreaker=TrainingJob.id,
                      default="-created_at")
TRIAL_SORTING = Sorting(columns={"number": Trial.number}, tiebreaker=Trial.number, default="number")
# Where a spec's field is named differently in the request body.
REQUEST_FIELD = {
    "folds": "cross_validation_folds", "metric": "optimization.metric", "direction": "optimization.direction",
    "strategy": "optimization.strategy", "max_trials": "optimization.max_trials",
    "parallelism": "optimization.parallelism", "early_stopping": "enable_early_stopping",
}


@dataclass(frozen=True)
class TrainingData:
    """What the request's data source looks like, enough to validate against before queuing."""

    dataset_id: uuid.UUID | None
    sha256: str
    path: str | None
    rows: int
    columns: list[str]
    # Per column, the count of each value when the column has few distinct values; None otherwise.
    value_counts: dict[str, dict[str, int] | None]


def _nest(flat: dict[str, list[str]]) -> dict[str, Any]:
    """{"optimization.metric": [..]} -> {"optimization": {"metric": [..]}}, as marshmallow nests field errors."""
    nested: dict[str, Any] = {}
    for key, messages in flat.items():
        *parents, leaf = REQUEST_FIELD.get(key, key).split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node.setdefault(leaf, []).extend(messages)
    return nested


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=_nest({field: [message]}))


# ---- the data source ------------------------------------------------------------------------------

def _from_dataset(registry: RegistryClient, dataset_id: uuid.UUID) -> TrainingData:
    dataset = registry.dataset(dataset_id)
    schema = dataset.get("schema") or []
    return TrainingData(dataset_id=dataset_id, sha256=dataset["sha256"], path=None, rows=dataset["rows"],
                        columns=[column["name"] for column in schema],
                        value_counts={column["name"]: column.get("value_counts") for column in schema})


def resolve_data_path(data_root: str, raw: str) -> str:
    """The real path of `raw` (relative to the data root, or absolute) if it is a file inside the root."""
    root = os.path.realpath(data_root)
    if ".." in raw.replace("\\", "/").split("/") or "\x00" in raw:
        raise _invalid("training_data_path", "The path must not contain '..'.")
    real = os.path.realpath(os.path.join(root, raw))
    # realpath resolves symlinks, so a link inside the root pointing out of it lands outside here.
    if os.path.commonpath([real, root]) != root:
        raise _invalid("training_data_path", "The path must be inside the configured data root.")
    if not os.path.isfile(real):
        raise _invalid("training_data_path", f"No file {raw!r} in the data root.")
    return real


class _HashingReader(io.RawIOBase):
    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        self.digest.update(data)
        buffer[: len(data)] = data
        return len(data)


def _from_path(data_root: str, raw: str, *, max_columns: int) -> TrainingData:
    """Read the file once: its sha256, header, row count and each column's value counts."""
    path = resolve_data_path(data_root, raw)
    with open(path, "rb") as handle:
        hashing = _HashingReader(handle)
        text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 16), encoding="utf-8-sig", newline="")
        try:
            reader = csv.reader(text)
            header = [name.strip() for name in next(reader, [])]
            # Before any row: a header of a million columns would cost a million counters per row.
            refused = header_problem(header, max_columns=max_columns)
            if refused:
                raise _invalid("training_data_path", refused)
            counts: list[dict[str, int] | None] = [{} for _ in header]
            rows = 0
            for record in reader:
                if not record:
                    continue
                rows += 1
                for index, value in enumerate(record[: len(header)]):
                    seen = counts[index]
                    value = value.strip()
                    if seen is None or value.lower() in NULL_TOKENS:
                        continue
                    seen[value] = seen.get(value, 0) + 1
                    if len(seen) > MAX_COUNTED_VALUES:
                        counts[index] = None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise _invalid("training_data_path", f"The file is not a readable CSV: {exc}.") from None
    if not header:
        raise _invalid("training_data_path", "The file is empty or has no header row.")
    return TrainingData(dataset_id=None, sha256=hashing.digest.hexdigest(), path=path, rows=rows, columns=header,
                        value_counts=dict(zip(header, counts)))


# ---- validation -----------------------------------------------------------------------------------

def _check_model(model: dict[str, Any]) -> None:
    if model["status"] == "archived":
        raise Conflict(f"Model {model['name']!r} is archived; restore it before training it.")
    if model["type"] not in TRAINABLE_TYPES:
        raise Conflict(f"Model {model['name']!r} is a {model['type']} model; training builds "
                       f"{' or '.join(TRAINABLE_TYPES)} models.", errors={"type": [f"not {', '.join(TRAINABLE_TYPES)}"]})


def _columns(body: dict[str, Any], model: dict[str, Any], data: TrainingData) -> tuple[str, list[str]]:
    target = body["target"] or model.get("target_variable")
    if not target:
        raise _invalid("target", "Name the target column: the model has no target_variable.")
    if target not in data.columns:
        raise _invalid("target", f"The data has no column {target!r}.")
    features = body["features"] or model.get("features") or [c for c in data.columns if c != target]
    missing = [name for name in features if name not in data.columns]
    if missing:
        raise _invalid("features", f"The data has no column(s) {', '.join(map(repr, missing))}.")
    return target, list(features)


def _check_folds(spec: TrainingSpec, data: TrainingData) -> None:
    train_share = 1 - spec.validation_split - spec.test_split
    if int(data.rows * train_share) < spec.folds:
        raise _invalid("folds", f"{spec.folds} folds need at least {spec.folds} training rows; "
                                f"{data.rows} rows leave about {int(data.rows * train_share)} for training.")
    counts = data.value_counts.get(spec.target)
    if spec.model_type != "classification" or not counts or len(counts) < 2:
        return  # unknown counts, or a data problem the worker reports in words (one class, no target)
    smote = spec.augmentation.enabled and "smote" in spec.augmentation.methods
    try:
        check_class_counts(counts, folds=spec.folds, validation_split=spec.validation_split,
                           test_split=spec.test_split, smote=smote)
    except TrainingDataError as exc:
        raise _invalid("folds", exc.detail) from None


def _spec(body: dict[str, Any], model: dict[str, Any], data: TrainingData, settings: Settings) -> TrainingSpec:
    model_type = model["type"]
    target, features = _columns(body, model, data)
    optimization = body["optimization"]
    try:
        estimator = resolve_estimator(body["estimator"], model_type)
    except ValueError as exc:
        raise _invalid("estimator", str(exc)) from None
    try:
        hyperparameters = parse_fixed_params(model.get("hyperparameters") or {}, estimator, model_type)
    except HyperparameterError as exc:
        raise ValidationFailed(
            f"The model's hyperparameters are the starting parameters of its trainings, and {exc.detail} "
            f"Change them on the model, or name an estimator that takes them.",
            errors={"hyperparameters": exc.errors}) from None
    search_space: dict[str, Any] = {}
    if body["enable_hyperparameter_optimization"]:
        try:
            search_space = parse_search_space(optimization["search_space"] or estimator.default_space(model_type),
                                              estimator, model_type)
        except SearchSpaceError as exc:
            raise ValidationFailed("The search space is not valid for this estimator.",
                                   errors={"optimization": {"search_space": exc.errors}}) from None
    metric = canonical_metric(optimization["metric"] or default_metric(model_type))
    pre, aug = body["preprocessing"], body["augmentation"]
    spec = TrainingSpec(
        model_type=model_type, features=tuple(features), target=target, estimator=body["estimator"],
        validation_split=body["validation_split"], test_split=body["test_split"],
        folds=body["cross_validation_folds"],
        preprocessing=Preprocessing(scaling=pre["scaling"], encoding=pre["encoding"],
                                    imputation=Imputation(**pre["imputation"]),
                                    feature_selection=FeatureSelection(**pre["feature_selection"])),
        augmentation=Augmentation(enabled=aug["enabled"], methods=tuple(aug["methods"])),
        early_stopping=body["enable_early_stopping"], random_state=body["random_state"], metric=metric,
        direction=optimization["direction"] or (METRICS[metric].direction if metric in METRICS else ""),
        strategy=optimization["strategy"],
        # Without HPO one trial fits the model's hyperparameters; its CV scores are still reported.
        max_trials=optimization["max_trials"] if body["enable_hyperparameter_optimization"] else 1,
        parallelism=optimization["parallelism"] or settings.hpo_parallelism,
        search_space=search_space, hyperparameters=hyperparameters,
    )
    errors = spec_errors(spec)
    if errors:
        raise ValidationFailed("The training request cannot run: " + ", ".join(sorted(errors)) + ".",
                               errors=_nest(errors))
    _check_folds(spec, data)
    return spec


# ---- use cases ------------------------------------------------------------------------------------

def create_training(*, session: Session, actor: Actor, request_id: str, settings: Settings,
                    registry: RegistryClient, model_ref: str, body: dict[str, Any]) -> TrainingJob:
    """Validate a training request against the model (by id or name) and its data, store the job and queue it."""
    model = registry.model(model_ref)
    model_id = uuid.UUID(model["id"])  # the registry's answer names the model by id, whatever the path said
    _check_model(model)
    if body["dataset_id"] is not None:
        data = _from_dataset(registry, body["dataset_id"])
    else:
        data = _from_path(settings.data_root, body["training_data_path"], max_columns=settings.max_csv_columns)
    spec = _spec(body, model, data, settings)
    job = TrainingJob(
        model_id=model_id, status=QUEUED, description=body["description"], spec=spec.to_dict(),
        dataset_id=data.dataset_id, dataset_sha256=data.sha256, training_data_path=data.path,
        # The version this training improves on, as it stood when the request was made.
        parent_version=model.get("latest_version"), requested_by=actor.name, requested_by_id=actor.id,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    audit.record_change(session, actor=actor, action="training.requested", resource_type="training_job",
                        resource_id=job.id, request_id=request_id, before=None,
                        after={"model_id": model_id, "dataset_id": data.dataset_id, "dataset_sha256": data.sha256,
                               "estimator": spec.estimator, "strategy": spec.strategy,
                               "max_trials": spec.max_trials})
    enqueue_after_commit(session, START_TRAINING, str(job.id), queue=settings.task_queue(QUEUE))
    return job


def get_job(*, session: Session, job_id: uuid.UUID) -> TrainingJob:
    """The training job with this id, or NotFound."""
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound(f"No training job with id {job_id}.")
    return job


def list_jobs(*, session: Session, registry: RegistryClient, model_ref: str, limit: int, cursor: str | None = None,
              sort: str | None = None, status: str | None = None) -> Page:
    """One page of the model's (by id or name) training jobs, newest first; NotFound for no such model."""
    model_id = uuid.UUID(registry.model(model_ref)["id"])
    statement = sa.select(TrainingJob).where(TrainingJob.model_id == model_id)
    if status:
        statement = statement.where(TrainingJob.status == status)
    return paginate(session, statement, sorting=JOB_SORTING, limit=limit, cursor=cursor, sort=sort)


def list_trials(*, session: Session, job_id: uuid.UUID, limit: int, cursor: str | None = None,
                sort: str | None = None, state: str | None = None) -> Page:
    """One page of a job's trials, in the order they were asked."""
    get_job(session=session, job_id=job_id)
    statement = sa.select(Trial).where(Trial.job_id == job_id)
    if state:
        statement = statement.where(Trial.state == state)
    return paginate(session, statement, sorting=TRIAL_SORTING, limit=limit, cursor=cursor, sort=sort)


def cancel_training(*, session: Session, actor: Actor, request_id: str, job_id: uuid.UUID) -> TrainingJob:
    """Cancel a queued or running job: queued trials are dropped, running ones stop at their next fold."""
    # The coordinator's lock: a trial finishing at the same moment sees the cancel, or the cancel sees it.
    job = lock_job(session, job_id)
    if job is None:
        raise NotFound(f"No training job with id {job_id}.")
    if job.status in FINISHED_JOB_STATUSES:
        raise Conflict(f"The training job is already {job.status}.", errors={"status": [job.status]})
    if job.phase == REGISTERING:
        raise Conflict("The training job has finished its model and is registering it; it cannot be cancelled.",
                       errors={"phase": [job.phase]})
    before = {"status": job.status, "phase": job.phase}
    end_job(session, job, CANCELLED, f"Cancelled by {actor.name}.", actor=actor.name)
    audit.record_change(session, actor=actor, action="training.cancelled", resource_type="training_job",
                        resource_id=job.id, request_id=request_id, before=before,
                        after={"status": job.status, "phase": job.phase})
    return job
