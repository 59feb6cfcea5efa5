"""Training service: training jobs and their HPO trials, run by the Celery pool in workers/hpo.py."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from shared.config import Settings
from shared.tasks import attach_celery, task_sender
from shared.web import Runtime, create_service_app


def register(api: Api, rt: Runtime) -> None:
    """Mount training's routes (the all-in-one composition calls this too) and let requests enqueue work."""
    # Imported here, not at the top: the API needs scikit-learn, and processes that only need the
    # tables (the relay, the event consumers, migrations) should not carry it.
    from services.training import api as training_api

    attach_celery(rt.db, task_sender(rt.settings))
    for blueprint in (training_api.model_trainings, training_api.blp):
        api.register_blueprint(blueprint)


def create_app(settings: Settings | dict | None = None) -> Flask:
    return create_service_app("training", [register], settings)
