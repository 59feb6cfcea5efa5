"""HTTP views for training jobs: request (202), read with progress, list, trials, cancel."""

from __future__ import annotations

import uuid

from flask import url_for
from flask_smorest import Api

from services.training import jobs
from shared.registry_client import RegistryClient
from services.training.schemas import (
    TrainingAcceptedSchema, TrainingJobSchema, TrainingListArgs, TrainingRequestSchema, TrialListArgs, TrialSchema,
)
from shared.auth import current_actor, requires
from shared.idempotency import idempotent
from shared.pagination import page_schema
from shared.tasks import attach_celery, task_sender
from shared.web import Blueprint, MethodView, Runtime, db_session, request_id, runtime

model_trainings = Blueprint("training_models", __name__, url_prefix="/api/v1/models",
                            description="Training requests for a model")
blp = Blueprint("trainings", __name__, url_prefix="/api/v1/trainings", description="Training jobs and their trials")


def _registry() -> RegistryClient:
    return RegistryClient.for_request(runtime().settings.registry_url)


@model_trainings.route("/<model:model_ref>/trainings")
class ModelTrainings(MethodView):
    @requires("viewer")
    @model_trainings.arguments(TrainingListArgs, location="query")
    @model_trainings.response(200, page_schema(TrainingJobSchema))
    def get(self, args, model_ref: str):
        """The model's training jobs, newest first."""
        return jobs.list_jobs(session=db_session(), registry=_registry(), model_ref=model_ref, **args)

    @requires("data_scientist")
    @idempotent
    @model_trainings.arguments(TrainingRequestSchema)
    @model_trainings.response(202, TrainingAcceptedSchema)
    def post(self, body, model_ref: str):
        """Validate a training request and queue it; poll the returned url for progress."""
        job = jobs.create_training(session=db_session(), actor=current_actor(), request_id=request_id(),
                                   settings=runtime().settings, registry=_registry(), model_ref=model_ref, body=body)
        url = url_for("trainings.TrainingItem", job_id=job.id)
        return {"id": job.id, "status": job.status, "url": url}, 202, {"Location": url}


@blp.route("/<uuid:job_id>")
class TrainingItem(MethodView):
    @requires("viewer")
    @blp.response(200, TrainingJobSchema)
    def get(self, job_id: uuid.UUID):
        """A training job: status, phase, progress, and at the end its scores and version number."""
        return jobs.get_job(session=db_session(), job_id=job_id)


@blp.route("/<uuid:job_id>/trials")
class TrainingTrials(MethodView):
    @requires("viewer")
    @blp.arguments(TrialListArgs, location="query")
    @blp.response(200, page_schema(TrialSchema))
    def get(self, args, job_id: uuid.UUID):
        """The job's HPO trials in the order they were asked."""
        return jobs.list_trials(session=db_session(), job_id=job_id, **args)


@blp.route("/<uuid:job_id>/cancel")
class TrainingCancel(MethodView):
    @requires("data_scientist")
    @blp.response(200, TrainingJobSchema)
    def post(self, job_id: uuid.UUID):
        """Cancel a queued or running job; a finished one is a 409."""
        return jobs.cancel_training(session=db_session(), actor=current_actor(), request_id=request_id(),
                                    job_id=job_id)


def register(api: Api, rt: Runtime) -> None:
    """Mount training's routes (its manifest names this; the all-in-one app calls it too) and let
    requests enqueue work."""
    attach_celery(rt.db, task_sender(rt.settings))
    for blueprint in (model_trainings, blp):
        api.register_blueprint(blueprint)
