"""The Kubernetes manifests of a deployment's endpoint: every object is one the Kubernetes API accepts
(checked against the `kubernetes` client's models, tests/support/kubernetes_schemas.py), and carries
the numbers the deployment's configs hold."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import pytest
import yaml

from services.deployment import manifests
from services.deployment.schemas import DeploymentRequestSchema
from services.deployment.tables import Deployment
from tests.support.deployments import EXAMPLE_3
from tests.support.kubernetes_schemas import InvalidManifest, validate

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "customer-churn-predictor-production"
IMAGE = "registry.example/modelyard:1.4"
DEFAULTS = {"environment": "production"}


def deployment_of(body: dict) -> Deployment:
    """A deployment row as a request with `body` stores it: its configs validated, defaults filled in."""
    loaded = DeploymentRequestSchema().load(body)
    return Deployment(id=uuid.uuid4(), model_id=uuid.uuid4(), version=7,
                      config={key: loaded[key] for key in ("deployment_config", "health_check_config",
                                                           "scaling_config", "monitoring_config")})


def rendered(body: dict) -> tuple[Deployment, dict, dict, dict]:
    deployment = deployment_of(body)
    kube_deployment, service, autoscaler = manifests.render(deployment, endpoint_name=ENDPOINT, serving_image=IMAGE)
    return deployment, kube_deployment, service, autoscaler


def container(kube_deployment: dict) -> dict:
    (only,) = kube_deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("body", [EXAMPLE_3, DEFAULTS], ids=["example-3", "defaults"])
def test_every_object_is_one_the_kubernetes_schemas_accept(body):
    _, *documents = rendered(body)
    assert [(doc["apiVersion"], doc["kind"]) for doc in documents] == [
        ("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler")]
    parsed = [validate(doc) for doc in documents]
    assert [type(obj).__name__ for obj in parsed] == ["V1Deployment", "V1Service", "V2HorizontalPodAutoscaler"]
    assert {doc["metadata"]["name"] for doc in documents} == {ENDPOINT}


def test_the_briefs_example_3_sets_replicas_resources_and_probes_from_its_configs():
    _, kube_deployment, _, _ = rendered(EXAMPLE_3)
    serving = container(kube_deployment)
    assert kube_deployment["spec"]["replicas"] == 3
    assert serving["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 30, "timeoutSeconds": 10,
             "failureThreshold": 3, "successThreshold": 1}
    assert serving["readinessProbe"] == probe
    # Alive is not ready: liveness asks /healthz, which a database blip does not fail.
    assert serving["livenessProbe"] == {**probe, "httpGet": {"path": "/healthz", "port": "http"}}


def test_readiness_takes_the_success_threshold_and_liveness_keeps_the_one_kubernetes_allows():
    body = {**EXAMPLE_3, "health_check_config": {**EXAMPLE_3["health_check_config"], "success_threshold": 4}}
    _, kube_deployment, _, _ = rendered(body)
    serving = container(kube_deployment)
    assert serving["readinessProbe"]["successThreshold"] == 4
    assert serving["livenessProbe"]["successThreshold"] == 1
    validate(kube_deployment)


def test_the_briefs_example_3_scales_between_its_bounds_on_cpu_and_memory_with_its_cooldowns():
    _, _, _, autoscaler = rendered(EXAMPLE_3)
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": ENDPOINT}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
    assert targets == {"cpu": {"type": "Utilization", "averageUtilization": 70},
                       "memory": {"type": "Utilization", "averageUtilization": 80}}
    assert spec["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 300},
                                "scaleDown": {"stabilizationWindowSeconds": 300}}


def test_defaults_render_the_schemas_defaults():
    _, kube_deployment, _, autoscaler = rendered(DEFAULTS)
    serving = container(kube_deployment)
    assert kube_deployment["spec"]["replicas"] == 1
    assert serving["resources"]["requests"] == serving["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert serving["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 30,
                                         "timeoutSeconds": 10, "failureThreshold": 3, "successThreshold": 1}
    spec = autoscaler["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 1)
    assert [m["resource"]["target"]["averageUtilization"] for m in spec["metrics"]] == [70, 80]
    assert spec["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 60},
                                "scaleDown": {"stabilizationWindowSeconds": 300}}


def test_fractions_round_up_to_whole_seconds_and_percent_kubernetes_accepts():
    body = {"environment": "staging",
            "health_check_config": {"interval": 0.5, "timeout": 2.5},
            "scaling_config": {"target_cpu_utilization": 0.2, "target_memory_utilization": 62.5,
                               "scale_up_cooldown": 0, "scale_down_cooldown": 10.1}}
    _, kube_deployment, _, autoscaler = rendered(body)
    probe = container(kube_deployment)["readinessProbe"]
    assert (probe["periodSeconds"], probe["timeoutSeconds"]) == (1, 3)
    assert [m["resource"]["target"]["averageUtilization"] for m in autoscaler["spec"]["metrics"]] == [1, 63]
    assert autoscaler["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 0},
                                              "scaleDown": {"stabilizationWindowSeconds": 11}}
    for document in (kube_deployment, autoscaler):
        validate(document)


def test_labels_name_the_model_version_endpoint_and_deployment_and_the_service_selects_the_pods():
    deployment, kube_deployment, service, autoscaler = rendered(EXAMPLE_3)
    labels = kube_deployment["spec"]["template"]["metadata"]["labels"]
    assert {key: labels[key] for key in ("modelyard.io/model", "modelyard.io/version", "modelyard.io/endpoint",
                                         "modelyard.io/deployment")} == {
        "modelyard.io/model": str(deployment.model_id), "modelyard.io/version": "7",
        "modelyard.io/endpoint": ENDPOINT, "modelyard.io/deployment": str(deployment.id)}
    assert service["spec"]["selector"] == kube_deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert kube_deployment["metadata"]["labels"] == service["metadata"]["labels"] == autoscaler["metadata"]["labels"]
    # The selector never names the version: the endpoint's next deployment is applied over this Deployment,
    # whose selector Kubernetes does not let change.
    assert set(service["spec"]["selector"]) == {"app.kubernetes.io/name"}


def _platform_serving_container() -> dict:
    documents = yaml.safe_load_all((ROOT / "k8s" / "services.yaml").read_text())
    (serving,) = [doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "serving"]
    return container(serving)


def test_the_pool_runs_the_serving_image_as_the_platforms_own_serving_deployment_does():
    platform = _platform_serving_container()
    _, kube_deployment, _, _ = rendered(EXAMPLE_3)
    serving = container(kube_deployment)
    assert serving["image"] == IMAGE
    for key in ("command", "ports", "envFrom", "env", "volumeMounts"):
        assert serving[key] == platform[key], key
    assert serving["env"] == [{"name": "MODELYARD_DEPLOYMENT_URL", "value": "http://deployment:8000"}]


def test_yaml_is_one_document_per_object_without_anchors_and_json_is_a_kubernetes_list():
    documents = list(rendered(EXAMPLE_3)[1:])
    text = manifests.as_yaml(documents)
    assert list(yaml.safe_load_all(text)) == documents
    assert "&id" not in text and "*id" not in text
    assert manifests.as_list(documents) == {"apiVersion": "v1", "kind": "List", "items": documents}


def _misspell(key: str):
    def change(document):
        probe = container(document)["readinessProbe"]
        probe[key] = probe.pop("periodSeconds")
    return change


# What breaks, in which object (0: Deployment, 1: Service, 2: HPA), and what the refusal names.
BROKEN = {
    "a misspelled probe field": (0, _misspell("periodSecond"), "readinessProbe.periodSecond: not a field"),
    "an unknown top-level field": (0, lambda doc: doc.update(spek=doc["spec"]), "spek: not a field"),
    "an unknown field in a list item": (0, lambda doc: container(doc).update(imagePullPolicyy="Always"),
                                        r"containers\[0\].imagePullPolicyy: not a field"),
    "an unknown field in an HPA metric": (2, lambda doc: doc["spec"]["metrics"][0]["resource"].update(
        targetAverageUtilization=70), "targetAverageUtilization: not a field"),
    "a missing container name": (0, lambda doc: container(doc).pop("name"), "V1Container\nname"),
    "a missing selector": (0, lambda doc: doc["spec"].pop("selector"), "V1DeploymentSpec\nselector"),
    "a missing service port": (1, lambda doc: doc["spec"]["ports"][0].pop("port"), "V1ServicePort\nport"),
    "a missing maxReplicas": (2, lambda doc: doc["spec"].pop("maxReplicas"), "maxReplicas"),
    "replicas as a string": (0, lambda doc: doc["spec"].update(replicas="3"), "replicas\n.*valid integer"),
    "a fractional probe period": (0, lambda doc: container(doc)["readinessProbe"].update(periodSeconds=0.5),
                                  "periodSeconds\n.*valid integer"),
    "a list where an object belongs": (0, lambda doc: doc["spec"].update(template=[doc["spec"]["template"]]),
                                       "template: expected an object"),
    "a liveness successThreshold over 1": (0, lambda doc: container(doc)["livenessProbe"].update(
        successThreshold=2), "livenessProbe.successThreshold must be 1"),
    "a selector the pods do not match": (0, lambda doc: doc["spec"]["selector"]["matchLabels"].update(tier="x"),
                                         "selector does not match"),
    "a name that is not a DNS-1035 label": (1, lambda doc: doc["metadata"].update(name="Churn_Production"),
                                            "DNS-1035"),
    "a stabilization window over an hour": (2, lambda doc: doc["spec"]["behavior"]["scaleUp"].update(
        stabilizationWindowSeconds=3601), "stabilizationWindowSeconds must lie"),
}


@pytest.mark.parametrize("what", BROKEN)
def test_the_validation_refuses_a_broken_manifest(what):
    index, breaks, reason = BROKEN[what]
    document = copy.deepcopy(rendered(EXAMPLE_3)[1:][index])
    validate(document)
    breaks(document)
    with pytest.raises(InvalidManifest, match=reason):
        validate(document)
