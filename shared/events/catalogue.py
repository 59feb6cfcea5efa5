"""The event catalogue: the envelope and one marshmallow schema per event type.

This is a public interface: external systems subscribe to these types. Add fields, never rename.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from shared.db import utcnow

SCHEMA_VERSION = 1


class Envelope(Schema):
    id = fields.UUID(required=True)
    type = fields.String(required=True)
    occurred_at = fields.DateTime(required=True)
    producer = fields.String(required=True)
    schema_version = fields.Integer(required=True)
    payload = fields.Dict(required=True)


class _Payload(Schema):
    class Meta:
        unknown = EXCLUDE  # consumers tolerate fields added after they were written


class ModelPayload(_Payload):
    model_id = fields.UUID(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True)
    actor = fields.String(required=True)
    changes = fields.Dict()
    # The model's sensitive features after the change (created, updated, archived); older events lack it.
    sensitive_features = fields.List(fields.String())


class ModelVersionRegistered(_Payload):
    model_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    artifact_sha256 = fields.String(required=True)
    dataset_id = fields.UUID(allow_none=True)
    training_job_id = fields.UUID(allow_none=True)
    actor = fields.String(required=True)
    # What monitoring watches the version with (events before these fields lack them).
    model_type = fields.String()
    metrics = fields.Dict()
    reference_sha256 = fields.String(allow_none=True)
    reference_rows = fields.Integer(allow_none=True)
    feature_kinds = fields.Dict(allow_none=True)  # feature -> numeric | categorical, from the profile
    feature_importances = fields.Dict(allow_none=True)
    # Numeric feature -> its decile bin edges in the profile: the bins a sensitive feature's values are stored as.
    bin_edges = fields.Dict(keys=fields.String(), values=fields.List(fields.Float()), allow_none=True)


class ModelVersionUpdated(_Payload):
    model_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    status = fields.String(required=True)  # ready or archived, after the change
    changes = fields.Dict(required=True)  # field -> new value, for description, tags and status
    actor = fields.String(required=True)


class ModelVersionDeleted(_Payload):
    model_id = fields.UUID(required=True)
    version = fields.Integer(required=True)  # never given to another version of the model
    artifact_sha256 = fields.String(required=True)
    actor = fields.String(required=True)


class AliasSet(_Payload):
    model_id = fields.UUID(required=True)
    alias = fields.String(required=True)
    version = fields.Integer(required=True)
    previous_version = fields.Integer(allow_none=True)  # None: the alias is new
    actor = fields.String(required=True)


class AliasRemoved(_Payload):
    model_id = fields.UUID(required=True)
    alias = fields.String(required=True)
    previous_version = fields.Integer(required=True)
    actor = fields.String(required=True)


class DatasetRegistered(_Payload):
    dataset_id = fields.UUID(required=True)
    name = fields.String(required=True)
    sha256 = fields.String(required=True)
    rows = fields.Integer(required=True)
    actor = fields.String(required=True)


class DatasetDeleted(_Payload):
    dataset_id = fields.UUID(required=True)
    name = fields.String(required=True)
    sha256 = fields.String(required=True)
    actor = fields.String(required=True)


class TrainingStarted(_Payload):
    job_id = fields.UUID(required=True)
    model_id = fields.UUID(required=True)
    strategy = fields.String(required=True)
    trials_total = fields.Integer(required=True)
    actor = fields.String(required=True)


class TrainingCompleted(_Payload):
    """Everything the registry needs to register the trained version with its full lineage."""

    job_id = fields.UUID(required=True)
    model_id = fields.UUID(required=True)
    artifact_sha256 = fields.String(required=True)
    dataset_id = fields.UUID(allow_none=True)
    dataset_sha256 = fields.String(required=True)
    training_data_path = fields.String(allow_none=True)
    parent_version = fields.Integer(allow_none=True)
    estimator = fields.String(required=True)
    best_params = fields.Dict(required=True)
    cv_metrics = fields.Dict(required=True)
    test_metrics = fields.Dict(required=True)
    code_version = fields.String(allow_none=True)
    random_state = fields.Integer(required=True)
    library_versions = fields.Dict(required=True)
    profile = fields.Dict(required=True)
    # The training features' reference sample (a CSV artifact) for drift; older events lack it.
    reference_sha256 = fields.String(allow_none=True)
    reference_rows = fields.Integer(allow_none=True)
    feature_importances = fields.Dict(allow_none=True)
    description = fields.String()
    actor = fields.String(required=True)
    actor_id = fields.String(allow_none=True)
    features = fields.List(fields.String())  # the columns the model was trained on; older events lack it


class TrainingFailed(_Payload):
    job_id = fields.UUID(required=True)
    model_id = fields.UUID(required=True)
    error = fields.String(required=True)
    cancelled = fields.Boolean(load_default=False)  # stopped by a user rather than by a failure
    actor = fields.String(required=True)


class ModelVersionRejected(_Payload):
    """The registry could not register a trained model (its model was deleted or archived meanwhile)."""

    model_id = fields.UUID(required=True)
    training_job_id = fields.UUID(required=True)
    reason = fields.String(required=True)


class DriftDetected(_Payload):
    """A model version's drift report passed the brief's drift score (0.2) after one that did not."""

    model_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    report_id = fields.UUID(required=True)
    overall_drift_score = fields.Float(required=True)
    severity = fields.String(required=True)
    drifted_features = fields.List(fields.String(), required=True)
    computed_at = fields.DateTime(required=True)


class AnomalyDetected(_Payload):
    """A model's operating metric (latency_p95_ms, error_rate, throughput, mean_prediction, missing_rate)
    was anomalous in the bucket starting at bucket_start."""

    anomaly_id = fields.UUID(required=True)
    model_id = fields.UUID(required=True)
    metric = fields.String(required=True)
    bucket_start = fields.DateTime(required=True)
    granularity = fields.String(required=True)
    value = fields.Float(required=True)
    expected = fields.Float(required=True)
    score = fields.Float(required=True)
    direction = fields.String(required=True)  # high or low


class AlertChanged(_Payload):
    """An alert fired (a rule's metric passed its threshold for a model), or resolved (it came back)."""

    alert_id = fields.UUID(required=True)
    rule_id = fields.UUID(required=True)
    rule_name = fields.String(required=True)
    model_id = fields.UUID(required=True)
    metric = fields.String(required=True)
    value = fields.Float(required=True)
    threshold = fields.Float(required=True)
    state = fields.String(required=True)
    fired_at = fields.DateTime(required=True)
    resolved_at = fields.DateTime(allow_none=True)


class DeploymentStarted(_Payload):
    deployment_id = fields.UUID(required=True)
    model_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    endpoint = fields.String(required=True)
    environment = fields.String(required=True)
    strategy = fields.String(required=True)
    actor = fields.String(required=True)
    actor_id = fields.String(allow_none=True)


class DeploymentOutcome(_Payload):
    """deployment.live, .failed and .rolled_back: where a rollout ended, and why."""

    deployment_id = fields.UUID(required=True)
    model_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    endpoint = fields.String(required=True)
    environment = fields.String(required=True)
    status = fields.String(required=True)
    reason = fields.String(allow_none=True)
    # Whether any version of the model is live on any endpoint after this: the model is `deployed` while so.
    model_live = fields.Boolean(required=True)
    previous_version = fields.Integer(allow_none=True)  # live and rolled_back: the version live before
    # live and rolled_back: the deployment live on the endpoint after this and its
    # monitoring_config.alert_thresholds (monitoring makes them the model's alert rules); null when none
    # is. Older events lack them.
    live_deployment_id = fields.UUID(allow_none=True)
    live_alert_thresholds = fields.Dict(allow_none=True)


class TrafficRoute(Schema):
    deployment_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    weight = fields.Float(required=True)  # percent; fractions since A/B tests (0.5: half a percent)
    # A shadow A/B test's B: a copy of every request, answers recorded, never returned. Older events lack it.
    shadow = fields.Boolean()


class EndpointTrafficChanged(_Payload):
    """From `effective_at` (a few seconds ahead for planned switches, now for a rollback) the endpoint's
    traffic goes to `routes`; empty routes: nothing is served."""

    endpoint = fields.String(required=True)
    model_id = fields.UUID(required=True)
    routes = fields.List(fields.Nested(TrafficRoute), required=True)
    effective_at = fields.DateTime(required=True)
    reason = fields.String(required=True)
    deployment_id = fields.UUID(allow_none=True)
    # What units are hashed with to place them among the routes (an A/B test's id); null: the endpoint's
    # name. Older events lack it.
    salt = fields.String(allow_none=True)


class ABTestGuardrail(Schema):
    name = fields.String(required=True)
    margin = fields.Float(required=True)
    relative = fields.Boolean(required=True)  # margin is a share of A's estimate
    lower_is_better = fields.Boolean(required=True)


class ABTestStarted(_Payload):
    """An A/B test's arms are on its endpoint (B takes `traffic_split` of the units once its health check passes;
    a shadow test's B, traffic_split 1, answers a copy of every request instead, never returned), with everything
    its analysis needs: the metrics, their guardrail margins and the test's settings."""

    ab_test_id = fields.UUID(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    endpoint = fields.String(required=True)
    model_type = fields.String(required=True)
    model_a_id = fields.UUID(required=True)
    version_a = fields.Integer(required=True)
    model_b_id = fields.UUID(required=True)
    version_b = fields.Integer(required=True)
    traffic_split = fields.Float(required=True)
    success_metrics = fields.List(fields.String(), required=True)
    guardrail_metrics = fields.List(fields.Nested(ABTestGuardrail), required=True)
    min_sample_size = fields.Integer(required=True)
    max_duration_days = fields.Integer(required=True)
    significance_level = fields.Float(required=True)
    mixing_variance = fields.Float(required=True)
    # Relative: the effect worth detecting, which sets a mean metric's tau^2 (monitoring's ab_analysis.py).
    minimum_detectable_effect = fields.Float(allow_none=True)
    started_at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    actor_id = fields.String(allow_none=True)


class ABTestStopped(_Payload):
    """Stopped by hand before a verdict: its analysis ends."""

    ab_test_id = fields.UUID(required=True)
    name = fields.String(required=True)
    actor = fields.String(required=True)


class ABTestDecided(_Payload):
    """Monitoring's analysis reached a verdict (the sequential test decisive after min_sample_size, the maximum
    duration reached, a sample ratio mismatch or a guardrail breached): the deployment service concludes the test."""

    ab_test_id = fields.UUID(required=True)
    verdict = fields.String(required=True)  # b_wins, a_wins, no_difference, invalid
    summary = fields.String(required=True)
    decided_at = fields.DateTime(required=True)


class ABTestConcluded(_Payload):
    """An A/B test ended with a verdict: b_wins, a_wins, no_difference or invalid (`summary` says why)."""

    ab_test_id = fields.UUID(required=True)
    name = fields.String(required=True)
    verdict = fields.String(required=True)
    summary = fields.String(required=True)
    model_a_id = fields.UUID(required=True)
    version_a = fields.Integer(required=True)
    model_b_id = fields.UUID(required=True)
    version_b = fields.Integer(required=True)


class ReplicaUsage(Schema):
    replica = fields.String(required=True)
    reported_at = fields.DateTime(required=True)
    # Percent of the CPU and memory the endpoint's live deployment gives each replica (its
    # deployment_config.resources, the limits of its Kubernetes manifests); None when not reported.
    cpu_percent = fields.Float(allow_none=True)
    memory_percent = fields.Float(allow_none=True)
    rss_bytes = fields.Integer(allow_none=True)


class EndpointUsageReported(_Payload):
    """Every minute, per endpoint with a live deployment: each replica's CPU and memory as it last
    reported them (services/deployment/observation.py), against that deployment's resources."""

    endpoint = fields.String(required=True)
    model_id = fields.UUID(required=True)
    environment = fields.String(required=True)
    deployment_id = fields.UUID(required=True)  # the live deployment whose resources are the 100%
    cpu_cores = fields.Float(required=True)
    memory_bytes = fields.Integer(required=True)
    replicas = fields.List(fields.Nested(ReplicaUsage), required=True)


CATALOGUE: dict[str, type[Schema]] = {
    "model.created": ModelPayload,
    "model.updated": ModelPayload,
    "model.archived": ModelPayload,
    "model.deleted": ModelPayload,  # changes: {"versions": how many went with it}
    "model_version.registered": ModelVersionRegistered,
    "model_version.updated": ModelVersionUpdated,
    "model_version.deleted": ModelVersionDeleted,
    "model_version.alias_set": AliasSet,
    "model_version.alias_removed": AliasRemoved,
    "model_version.rejected": ModelVersionRejected,
    "dataset.registered": DatasetRegistered,
    "dataset.deleted": DatasetDeleted,
    "training.started": TrainingStarted,
    "training.completed": TrainingCompleted,
    "training.failed": TrainingFailed,
    "deployment.started": DeploymentStarted,
    "deployment.live": DeploymentOutcome,
    "deployment.failed": DeploymentOutcome,
    "deployment.rolled_back": DeploymentOutcome,
    "endpoint.traffic_changed": EndpointTrafficChanged,
    "endpoint.usage_reported": EndpointUsageReported,
    "drift.detected": DriftDetected,
    "anomaly.detected": AnomalyDetected,
    "alert.fired": AlertChanged,
    "alert.resolved": AlertChanged,
    "abtest.started": ABTestStarted,
    "abtest.stopped": ABTestStopped,
    "abtest.decided": ABTestDecided,
    "abtest.concluded": ABTestConcluded,
}


_SCHEMAS: dict[str, Schema] = {}  # instances are stateless; building one per event costs more than using it


class UnknownEventType(ValueError):
    pass


class MalformedEvent(ValueError):
    """A message no consumer can ever handle: not JSON, not an envelope, or an unknown type."""


def validate_payload(event_type: str, payload: dict) -> dict[str, Any]:
    """Return the payload as JSON-ready data, or raise if it breaks its schema."""
    schema_cls = CATALOGUE.get(event_type)
    if schema_cls is None:
        raise UnknownEventType(f"{event_type!r} is not in the event catalogue")
    schema = _SCHEMAS.get(event_type)
    if schema is None:
        schema = _SCHEMAS[event_type] = schema_cls()
    data = schema.dump(payload)
    errors = schema.validate(data)
    if errors:
        raise ValidationError(errors)
    return data


def build_envelope(event_type: str, payload: dict, *, producer: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "occurred_at": utcnow().isoformat(),
        "producer": producer,
        "schema_version": SCHEMA_VERSION,
        "payload": validate_payload(event_type, payload),
    }


def parse_envelope(body: bytes | str) -> dict[str, Any]:
    """The envelope in a received message body, checked against the catalogue, else MalformedEvent."""
    try:
        envelope = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise MalformedEvent("body is not a JSON object")
    errors = Envelope(unknown=EXCLUDE).validate(envelope)  # later envelope fields are tolerated
    if errors:
        raise MalformedEvent(f"not an event envelope: {errors}")
    schema_cls = CATALOGUE.get(envelope["type"])
    if schema_cls is None:
        raise MalformedEvent(f"{envelope['type']!r} is not in the event catalogue")
    errors = schema_cls().validate(envelope["payload"])
    if errors:
        raise MalformedEvent(f"payload breaks the {envelope['type']} schema: {errors}")
    return envelope
