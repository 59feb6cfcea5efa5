"""Kubernetes objects checked against the API's schemas as the `kubernetes` client ships them (its model
classes), and against the few rules the API server adds that a schema cannot say.

The client's own `from_dict` checks required fields and types but drops keys it does not know, so a
misspelled field would pass it and be ignored by a cluster too: every key is first looked up in its
model's `attribute_map`, all the way down.
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from kubernetes.client import models

KINDS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service",
         ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler"}
# How the client's models name a field's type when it is a list or a map: "List[V1Container]", "Dict[str, str]".
CONTAINER_TYPE = re.compile(r"^(List|Dict)\[(?:str, )?(.+)\]$")
# https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ and .../labels/#syntax-and-character-set
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class InvalidManifest(ValueError):
    """The object would not be accepted by the Kubernetes API; the message names where."""


def validate(document: dict[str, Any]) -> Any:
    """The client's model object of `document`, or InvalidManifest naming the first thing wrong."""
    kind = (document.get("apiVersion"), document.get("kind"))
    if kind not in KINDS:
        raise InvalidManifest(f"not a kind these checks know: {kind}")
    model_name = KINDS[kind]
    _only_known_keys(document, model_name, kind[1])
    try:
        parsed = getattr(models, model_name).from_dict(document)
    except pydantic.ValidationError as exc:
        raise InvalidManifest(f"{kind[1]}: {exc}") from exc
    _api_server_rules(document)
    return parsed


def _only_known_keys(value: Any, type_name: str, path: str) -> None:
    container = CONTAINER_TYPE.match(type_name)
    if container:
        shape, item_type = container.groups()
        expected = list if shape == "List" else dict
        if not isinstance(value, expected):
            raise InvalidManifest(f"{path}: expected a {expected.__name__} ({type_name})")
        for key, item in (enumerate(value) if shape == "List" else value.items()):
            _only_known_keys(item, item_type, f"{path}[{key}]")
        return
    model = getattr(models, type_name, None)
    if model is None:
        return  # a scalar (str, int, object): the model's own validation checks its type
    if not isinstance(value, dict):
        raise InvalidManifest(f"{path}: expected an object ({type_name})")
    fields = {key: attribute for attribute, key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            raise InvalidManifest(f"{path}.{key}: not a field of {type_name}")
        _only_known_keys(item, model.openapi_types[fields[key]], f"{path}.{key}")


def _api_server_rules(document: dict[str, Any]) -> None:
    """What the API server refuses beyond the schema, of what these objects hold."""
    metadata = document["metadata"]
    if not DNS_1035_LABEL.match(metadata["name"]):
        raise InvalidManifest(f"metadata.name {metadata['name']!r} is not a DNS-1035 label")
    bad = {k: v for k, v in (metadata.get("labels") or {}).items() if not LABEL_VALUE.match(v)}
    if bad:
        raise InvalidManifest(f"metadata.labels: invalid label values {bad}")
    if document["kind"] == "Deployment":
        spec = document["spec"]
        selected = spec["selector"]["matchLabels"].items()
        if not selected <= spec["template"]["metadata"]["labels"].items():
            raise InvalidManifest("spec.selector does not match the template's labels")
        for container in spec["template"]["spec"]["containers"]:
            liveness = container.get("livenessProbe") or {}
            if liveness.get("successThreshold", 1) != 1:
                raise InvalidManifest(f"container {container['name']}: livenessProbe.successThreshold must be 1")
    if document["kind"] == "HorizontalPodAutoscaler":
        spec = document["spec"]
        if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
            raise InvalidManifest("spec.minReplicas must lie between 1 and maxReplicas")
        for direction, rules in (spec.get("behavior") or {}).items():
            if not 0 <= rules.get("stabilizationWindowSeconds", 0) <= 3600:
                raise InvalidManifest(f"spec.behavior.{direction}.stabilizationWindowSeconds must lie in 0..3600")
