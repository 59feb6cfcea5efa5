"""HTTP views of the control plane: request, read, list and roll back deployments; endpoints, their
history, and the desired state serving replicas poll."""

from __future__ import annotations

import uuid

from flask import Response, url_for
from flask_smorest import Api

from services.deployment import api_ab_tests, deployments, manifests, observation
from services.deployment.schemas import (
    DeploymentAcceptedSchema, DeploymentListArgs, DeploymentRequestSchema, DeploymentSchema, DesiredStateSchema,
    EndpointSchema, HistoryArgs, ManifestArgs, ManifestListSchema, ReplicaReportSchema, ServedAtSchema,
)
from services.deployment.service import QUEUE
from shared.auth import current_actor, requires
from shared.idempotency import idempotent
from shared.pagination import ListArgs, page_schema
from shared.registry_client import RegistryClient
from shared.tasks import attach_celery, task_sender
from shared.web import Blueprint, MethodView, Runtime, db_session, request_id, runtime

model_deployments = Blueprint("deployment_models", __name__, url_prefix="/api/v1/models",
                              description="Deployment requests for a model")
blp = Blueprint("deployments", __name__, url_prefix="/api/v1/deployments",
                description="Deployments: their rollout, transitions and rollback")
endpoints = Blueprint("endpoints", __name__, url_prefix="/api/v1/endpoints",
                      description="Endpoints: what is live, what is coming, what served when")


def _registry() -> RegistryClient:
    return RegistryClient.for_request(runtime().settings.registry_url)


def _predict_url(name: str) -> str:
    return f"/api/v1/endpoints/{name}/predict"


@model_deployments.route("/<model:model_ref>/deployments")
class ModelDeployments(MethodView):
    @requires("viewer")
    @model_deployments.arguments(DeploymentListArgs, location="query")
    @model_deployments.response(200, page_schema(DeploymentSchema))
    def get(self, args, model_ref: str):
        """The model's deployments, newest first, each with every transition."""
        return deployments.list_deployments(session=db_session(), registry=_registry(), model_ref=model_ref, **args)

    @requires("ml_engineer")
    @idempotent
    @model_deployments.arguments(DeploymentRequestSchema)
    @model_deployments.response(202, DeploymentAcceptedSchema)
    def post(self, body, model_ref: str):
        """Deploy a version (default: the champion alias's, else the latest) to the model's endpoint in an
        environment; poll the returned url to follow the rollout."""
        rt = runtime()
        deployment = deployments.request_deployment(
            session=db_session(), actor=current_actor(), request_id=request_id(), registry=_registry(),
            check_artifact=rt.artifacts.verify, queue=rt.settings.task_queue(QUEUE), model_ref=model_ref, body=body)
        url = url_for("deployments.DeploymentItem", deployment_id=deployment.id)
        return ({"id": deployment.id, "status": deployment.status, "endpoint": deployment.endpoint_name,
                 "endpoint_url": _predict_url(deployment.endpoint_name), "url": url}, 202, {"Location": url})


@blp.route("/<uuid:deployment_id>")
class DeploymentItem(MethodView):
    @requires("viewer")
    @blp.response(200, DeploymentSchema)
    def get(self, deployment_id: uuid.UUID):
        """A deployment with every transition, its reason and time."""
        return deployments.get_deployment(session=db_session(), deployment_id=deployment_id)


@blp.route("/<uuid:deployment_id>/rollback")
class DeploymentRollback(MethodView):
    @requires("ml_engineer")
    @blp.response(200, DeploymentSchema)
    def post(self, deployment_id: uuid.UUID):
        """Return the endpoint to the version live before this deployment, at once; a rollout still
        health checking just ends."""
        return deployments.request_rollback(session=db_session(), actor=current_actor(), request_id=request_id(),
                                            deployment_id=deployment_id)


@blp.route("/<uuid:deployment_id>/manifests")
class DeploymentManifests(MethodView):
    @requires("viewer")
    @blp.arguments(ManifestArgs, location="query")
    @blp.response(200, ManifestListSchema)
    @blp.alt_response(200, schema={"type": "array", "items": {"type": "object"}}, content_type=manifests.CONTENT_TYPE,
                      success=True, description="By default a YAML stream, one document per object; "
                                                "`?format=json`: one Kubernetes List.")
    def get(self, args, deployment_id: uuid.UUID):
        """The Kubernetes Deployment, Service and HorizontalPodAutoscaler of the deployment's endpoint, as its
        configs say: `kubectl apply -f -` in the platform's namespace."""
        deployment = deployments.get_deployment(session=db_session(), deployment_id=deployment_id)
        documents = manifests.render(deployment, endpoint_name=deployment.endpoint_name,
                                     serving_image=runtime().settings.serving_image)
        if args["format"] == "json":
            return manifests.as_list(documents)
        return Response(manifests.as_yaml(documents), mimetype=manifests.CONTENT_TYPE)


def _described(endpoint) -> dict:
    return deployments.describe_endpoint(db_session(), endpoint, _predict_url(endpoint.name))


@endpoints.route("")
class EndpointList(MethodView):
    @requires("viewer")
    @endpoints.arguments(ListArgs, location="query")
    @endpoints.response(200, page_schema(EndpointSchema))
    def get(self, args):
        """Every endpoint, by name, with its live version, candidate and traffic."""
        page = deployments.list_endpoints(db_session(), **args)
        return {"items": [_described(endpoint) for endpoint in page.items], "next_cursor": page.next_cursor}


@endpoints.route("/<string:name>")
class EndpointItem(MethodView):
    @requires("viewer")
    @endpoints.response(200, EndpointSchema)
    def get(self, name: str):
        """The endpoint's live version, candidate, the traffic in effect and any switch written ahead."""
        return _described(deployments.get_endpoint(db_session(), name))


@endpoints.route("/<string:name>/history")
class EndpointHistory(MethodView):
    @requires("viewer")
    @endpoints.arguments(HistoryArgs, location="query")
    @endpoints.response(200, ServedAtSchema)
    def get(self, args, name: str):
        """Which version (or versions, and their weights) served at a moment (`at`, default now)."""
        session = db_session()
        return deployments.history(session, deployments.get_endpoint(session, name), args["at"])


@endpoints.route("/<string:name>/reports")
class EndpointReports(MethodView):
    @requires("ml_engineer")
    @endpoints.arguments(ReplicaReportSchema)
    @endpoints.response(204)
    def post(self, body, name: str):
        """A serving replica's counts, errors and latency per version, and its CPU and memory (replicas send
        these every few seconds; the rollout's observation and the endpoint's replica list read them)."""
        session = db_session()
        observation.record_report(session, deployments.get_endpoint(session, name), body)


@endpoints.route("/<string:name>/desired-state")
class EndpointDesiredState(MethodView):
    @requires("viewer")
    @endpoints.response(200, DesiredStateSchema)
    def get(self, name: str):
        """What serving replicas poll: the traffic in effect, switches ahead, and how to load each version."""
        session = db_session()
        return deployments.desired_state(session, deployments.get_endpoint(session, name))


def register(api: Api, rt: Runtime) -> None:
    """Mount deployment's routes and let requests enqueue rollouts."""
    attach_celery(rt.db, task_sender(rt.settings))
    for blueprint in (model_deployments, blp, endpoints, api_ab_tests.blp):
        api.register_blueprint(blueprint)
