"""GET /api/v1/deployments/<id>/manifests through the API on a real deployment: a pending one has its
manifests too, so no worker runs here; the rollout task waits in this module's own queue, deleted after."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
import yaml
from kombu import Connection

from tests.conftest import RUN_ID
from tests.support.deployments import EXAMPLE_3, deploy, model_with_versions
from tests.support.kubernetes_schemas import validate
from tests.support.registry import bearer
from tests.support.training import training_settings
from tests.support.yaml_stream import register_yaml_stream_reader

pytestmark = pytest.mark.integration
register_yaml_stream_reader()


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    settings = training_settings(database_url, servers, tmp_path_factory.mktemp("manifests"), RUN_ID)
    yield {**settings, "serving_image": "registry.example/modelyard:2.0"}
    with Connection(settings["broker_url"]) as connection:
        connection.default_channel.queue_delete(settings["task_queue_prefix"] + "deploy")


@pytest.fixture
def settings_overrides(settings):
    return settings


@pytest.fixture
def deployment(app, client, ds):
    model = model_with_versions(client, ds, name="Customer Churn Predictor")
    return deploy(client, bearer(app, "ml_engineer", "mira"), model["id"], **EXAMPLE_3)


@pytest.fixture
def viewer(app):
    return bearer(app, "viewer", "vic")


def test_a_pending_deployment_renders_its_endpoints_three_objects_as_yaml(client, viewer, deployment):
    assert client.get(deployment["url"], headers=viewer).json["status"] == "pending"
    response = client.get(f"{deployment['url']}/manifests", headers=viewer)
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    documents = list(yaml.safe_load_all(response.get_data(as_text=True)))
    assert [doc["kind"] for doc in documents] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for document in documents:
        validate(document)
        assert document["metadata"]["name"] == "customer-churn-predictor-production"
        assert document["metadata"]["labels"]["modelyard.io/deployment"] == deployment["id"]
    kube_deployment, _, autoscaler = documents
    container = kube_deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/modelyard:2.0"
    assert kube_deployment["spec"]["replicas"] == 3
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (2, 10)


def test_json_gives_the_same_objects_as_one_kubernetes_list(client, viewer, deployment):
    as_yaml = list(yaml.safe_load_all(client.get(f"{deployment['url']}/manifests", headers=viewer).get_data()))
    response = client.get(f"{deployment['url']}/manifests?format=json", headers=viewer)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == {"apiVersion": "v1", "kind": "List", "items": as_yaml}


def test_an_unknown_deployment_is_404_a_bad_format_422_and_no_credentials_401(client, viewer, deployment):
    response = client.get(f"/api/v1/deployments/{uuid.uuid4()}/manifests", headers=viewer)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert client.get(f"{deployment['url']}/manifests?format=xml", headers=viewer).status_code == 422
    assert client.get(f"{deployment['url']}/manifests").status_code == 401


def test_both_answers_are_what_the_openapi_document_says(app, client, viewer, deployment):
    operation = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)[
        "/api/v1/deployments/{deployment_id}/manifests"]["GET"]
    for query in ("", "?format=json"):
        operation.validate_response(client.get(f"{deployment['url']}/manifests{query}", headers=viewer))
