"""Training service: training jobs and their HPO trials, run by the Celery pool in workers/hpo.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from flask_smorest import Api

    from shared.config import Settings
    from shared.web import Runtime

# The web stack is imported in the functions below, not here: the Celery worker and the event
# consumers import this package for its tables and use cases, and carry no Flask for it.


def register(api: Api, rt: Runtime) -> None:
    """Mount training's routes (the all-in-one composition calls this too) and let requests enqueue work."""
    from services.training import api as training_api
    from shared.tasks import attach_celery, task_sender

    attach_celery(rt.db, task_sender(rt.settings))
    for blueprint in (training_api.model_trainings, training_api.blp):
        api.register_blueprint(blueprint)


def create_app(settings: Settings | dict | None = None) -> Flask:
    from shared.web import create_service_app

    return create_service_app("training", [register], settings)
