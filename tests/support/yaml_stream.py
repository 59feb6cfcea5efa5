"""Schemathesis reads a YAML answer as a single document; the manifests endpoint, the one API answer in
YAML, is a stream of them, one per Kubernetes object, which its OpenAPI document describes as an array."""

from __future__ import annotations

import schemathesis
import yaml
from schemathesis.core.media_types import YAML_MEDIA_TYPES


def read_yaml_stream(_context, response) -> list:
    return list(yaml.safe_load_all(response.content))


def register_yaml_stream_reader() -> None:
    """Have schemathesis read every document of a YAML answer (registering again changes nothing).

    All of YAML's media types: schemathesis takes the first reader registered for any of them.
    """
    schemathesis.deserializer(*YAML_MEDIA_TYPES)(read_yaml_stream)
