"""Kubernetes manifests of a deployment's endpoint: the serving pool (Deployment), its Service and its
HorizontalPodAutoscaler, rendered from the deployment's configs.

Pure functions of the deployment row: apply the result in the platform's namespace (k8s/), whose
ConfigMap, Secret and artifacts volume the pool shares with the platform's own serving Deployment.
The configs' units are the brief's (seconds, percent); Kubernetes counts whole seconds and whole
percent, so a fraction rounds up to at least the smallest value Kubernetes accepts.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from services.deployment.tables import Deployment

CONTENT_TYPE = "application/yaml"
PORT = 8000
# As k8s/services.yaml runs the platform's serving (tests/unit/test_deployment_manifests.py holds the two alike).
SERVING_COMMAND = ["gunicorn", "-c", "python:launch.gunicorn_hooks", "-b", f"0.0.0.0:{PORT}", "-w", "2", "-k", "sync",
                   "launch.apps:service_app('serving')"]
# Where replicas poll the desired state: the deployment service's Service in k8s/services.yaml.
DEPLOYMENT_URL = f"http://deployment:{PORT}"
CONFIG_MAP, SECRET, ARTIFACTS_CLAIM, ARTIFACT_ROOT = (
    "modelyard-config", "modelyard-secrets", "modelyard-artifacts", "/data/artifacts")
LABEL_PREFIX = "modelyard.io/"


def _whole_seconds(seconds: float, *, least: int) -> int:
    return max(least, math.ceil(seconds))


def _whole_percent(percent: float) -> int:
    return max(1, math.ceil(percent))


def _labels(deployment: Deployment, name: str) -> dict[str, str]:
    """The selector's label, and the ones that say what the pods serve (label values are strings)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "modelyard",
            f"{LABEL_PREFIX}model": str(deployment.model_id), f"{LABEL_PREFIX}version": str(deployment.version),
            f"{LABEL_PREFIX}endpoint": name, f"{LABEL_PREFIX}deployment": str(deployment.id)}


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _probe(health: dict[str, Any], path: str, *, success_threshold: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"},
            "periodSeconds": _whole_seconds(health["interval"], least=1),
            "timeoutSeconds": _whole_seconds(health["timeout"], least=1),
            "failureThreshold": health["failure_threshold"], "successThreshold": success_threshold}


def _deployment(deployment: Deployment, name: str, labels: dict[str, str], serving_image: str) -> dict[str, Any]:
    config = deployment.config
    health, resources = config["health_check_config"], config["deployment_config"]["resources"]
    quantities = {"cpu": resources["cpu"], "memory": resources["memory"]}
    container = {
        "name": "serving",
        "image": serving_image,
        "command": list(SERVING_COMMAND),
        "ports": [{"containerPort": PORT, "name": "http"}],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}, {"secretRef": {"name": SECRET}}],
        "env": [{"name": "MODELYARD_DEPLOYMENT_URL", "value": DEPLOYMENT_URL}],
        "readinessProbe": _probe(health, health["endpoint"], success_threshold=health["success_threshold"]),
        # Alive is not ready: a replica whose database blips must leave the Service, not be restarted. The
        # Kubernetes API refuses a liveness probe whose successThreshold is not 1.
        "livenessProbe": _probe(health, "/healthz", success_threshold=1),
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACT_ROOT}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": config["deployment_config"]["replicas"],
            # Only the endpoint: a Deployment's selector cannot change, and the endpoint's next version
            # is applied over this one.
            "selector": {"matchLabels": _selector(name)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container],
                         "volumes": [{"name": "artifacts",
                                      "persistentVolumeClaim": {"claimName": ARTIFACTS_CLAIM}}]},
            },
        },
    }


def _service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": _selector(name), "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]},
    }


def _autoscaler(deployment: Deployment, name: str, labels: dict[str, str]) -> dict[str, Any]:
    scaling = deployment.config["scaling_config"]

    def utilization(resource: str, percent: float) -> dict[str, Any]:
        return {"type": "Resource", "resource": {
            "name": resource, "target": {"type": "Utilization", "averageUtilization": _whole_percent(percent)}}}

    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling["min_replicas"],
            "maxReplicas": scaling["max_replicas"],
            "metrics": [utilization("cpu", scaling["target_cpu_utilization"]),
                        utilization("memory", scaling["target_memory_utilization"])],
            # A cooldown is how long a scaling decision stands before the opposite one: Kubernetes'
            # stabilization window, which it bounds to an hour, as the configs do.
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": _whole_seconds(scaling["scale_up_cooldown"], least=0)},
                "scaleDown": {"stabilizationWindowSeconds": _whole_seconds(scaling["scale_down_cooldown"],
                                                                           least=0)},
            },
        },
    }


def render(deployment: Deployment, *, endpoint_name: str, serving_image: str) -> list[dict[str, Any]]:
    """The endpoint's serving Deployment, Service and HorizontalPodAutoscaler, as this deployment configures them."""
    labels = _labels(deployment, endpoint_name)
    return [_deployment(deployment, endpoint_name, labels, serving_image), _service(endpoint_name, labels),
            _autoscaler(deployment, endpoint_name, labels)]


class _PlainDumper(yaml.SafeDumper):
    # The objects share their labels: written out in each, not as YAML anchors a reader must resolve.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def as_yaml(documents: list[dict[str, Any]]) -> str:
    """One YAML stream, a document per object: what `kubectl apply -f -` reads."""
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False)


def as_list(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The objects as one Kubernetes List, which `kubectl apply -f` also reads as JSON."""
    return {"apiVersion": "v1", "kind": "List", "items": documents}
