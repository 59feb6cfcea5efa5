"""Deployment's request and response schemas: the HTTP contract and the OpenAPI document.

Units follow the brief: seconds for intervals, timeouts, pauses and cooldowns; percent for
utilization, cpu, memory and error rate; milliseconds for latency. Every bound is here, so a value
out of range is a 422 naming its field before anything is stored.
"""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.deployment.tables import CANARY, ENVIRONMENTS, STATUSES, STRATEGIES
from shared.pagination import ListArgs
from shared.schemas import StrictSchema, UtcDateTime

MAX_REPLICAS = 50
# A rollout must end in minutes: health checking longer than this is a misconfiguration, not patience.
MAX_HEALTH_CHECK_SECONDS = 480
# Kubernetes resource quantities (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/).
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
UUID_TEXT = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _seconds(default: float, *, low: float = 0, high: float = 3600, low_inclusive: bool = True) -> fields.Float:
    return fields.Float(load_default=default, allow_nan=False,
                        validate=validate.Range(min=low, max=high, min_inclusive=low_inclusive))


def _percent(default: float | None) -> fields.Float:
    return fields.Float(load_default=default, allow_none=default is None, allow_nan=False,
                        validate=validate.Range(min=0, max=100, min_inclusive=False))


def _count(default: int | None, low: int = 1, high: int = MAX_REPLICAS) -> fields.Integer:
    return fields.Integer(load_default=default, allow_none=default is None, strict=True,
                          validate=validate.Range(min=low, max=high))


class ResourcesSchema(StrictSchema):
    cpu = fields.String(load_default="500m", validate=validate.Regexp(QUANTITY, error="Not a Kubernetes quantity."))
    memory = fields.String(load_default="512Mi",
                           validate=validate.Regexp(QUANTITY, error="Not a Kubernetes quantity."))


class DeploymentConfigSchema(StrictSchema):
    resources = fields.Nested(ResourcesSchema, load_default=lambda: ResourcesSchema().load({}))
    # The serving pool's starting size; scaling_config bounds it.
    replicas = _count(None)
    # Longest a prediction request may take, in seconds.
    timeout = _seconds(30, low=0, high=300, low_inclusive=False)


class HealthCheckConfigSchema(StrictSchema):
    # The readiness probe's path: one a serving replica answers (liveness is always /healthz).
    endpoint = fields.String(load_default="/readyz", validate=validate.OneOf(("/health", "/readyz", "/healthz")))
    interval = _seconds(30, low=0, high=3600, low_inclusive=False)
    # Longest a smoke prediction may take before it counts as a failure, in seconds.
    timeout = _seconds(10, low=0, high=120, low_inclusive=False)
    retries = _count(3, low=0, high=10)
    success_threshold = _count(1, high=10)
    failure_threshold = _count(3, high=10)

    @validates_schema
    def _bounded(self, data, **kwargs):
        worst = (data["success_threshold"] + data["failure_threshold"]) * data["timeout"]
        if worst > MAX_HEALTH_CHECK_SECONDS:
            raise ValidationError(f"Health checking could take {worst:g} s ((success_threshold + "
                                  f"failure_threshold) x timeout); at most {MAX_HEALTH_CHECK_SECONDS} s.", "timeout")


class ScalingConfigSchema(StrictSchema):
    min_replicas = _count(1)
    max_replicas = _count(None)
    target_cpu_utilization = _percent(70)
    target_memory_utilization = _percent(80)
    scale_up_cooldown = _seconds(60)
    scale_down_cooldown = _seconds(300)


class AlertThresholdsSchema(StrictSchema):
    cpu = _percent(None)
    memory = _percent(None)
    error_rate = fields.Float(load_default=5.0, allow_nan=False, validate=validate.Range(min=0, max=100))
    latency = fields.Float(load_default=1000.0, allow_nan=False,
                           validate=validate.Range(min=0, max=600_000, min_inclusive=False))


class MonitoringConfigSchema(StrictSchema):
    enable_metrics = fields.Boolean(load_default=True)
    enable_logging = fields.Boolean(load_default=True)
    enable_tracing = fields.Boolean(load_default=False)
    # How long after all traffic moved the candidate is still watched (and rolled back on a breach).
    observation_seconds = _seconds(60)
    # Fewer requests than this to the candidate make no judgement: one error in two is not a 50% rate.
    min_requests = fields.Integer(load_default=20, strict=True, validate=validate.Range(min=1, max=1_000_000))
    alert_thresholds = fields.Nested(AlertThresholdsSchema, load_default=lambda: AlertThresholdsSchema().load({}))


class CanarySchema(StrictSchema):
    steps = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=100)),
                        load_default=lambda: [10, 50, 100], validate=validate.Length(min=1, max=20))
    pause_seconds = _seconds(60, high=1500)

    @validates_schema
    def _increasing_to_100(self, data, **kwargs):
        steps = data["steps"]
        if any(later <= earlier for earlier, later in zip(steps, steps[1:])) or steps[-1] != 100:
            raise ValidationError("Steps must increase and end at 100 (percent of traffic).", "steps")


class DeploymentRequestSchema(StrictSchema):
    """POST /api/v1/models/<id>/deployments: which version, where, how to roll it out and watch it."""

    version = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1),
                             metadata={"description": "default: the version the `champion` alias names, else the latest"})
    environment = fields.String(required=True, validate=validate.OneOf(ENVIRONMENTS))
    strategy = fields.String(load_default="blue_green", validate=validate.OneOf(STRATEGIES))
    canary = fields.Nested(CanarySchema, load_default=None, allow_none=True,
                           metadata={"description": "steps and pause of a canary rollout (default [10, 50, 100], 60 s)"})
    deployment_config = fields.Nested(DeploymentConfigSchema, load_default=lambda: DeploymentConfigSchema().load({}))
    health_check_config = fields.Nested(HealthCheckConfigSchema,
                                        load_default=lambda: HealthCheckConfigSchema().load({}))
    scaling_config = fields.Nested(ScalingConfigSchema, load_default=lambda: ScalingConfigSchema().load({}))
    monitoring_config = fields.Nested(MonitoringConfigSchema, load_default=lambda: MonitoringConfigSchema().load({}))

    @validates_schema
    def _consistent(self, data, **kwargs):
        if data["canary"] is not None and data["strategy"] != CANARY:
            raise ValidationError("Canary settings need strategy canary.", "canary")
        if data["strategy"] == CANARY and data["canary"] is None:
            data["canary"] = CanarySchema().load({})
        scaling, replicas = data["scaling_config"], data["deployment_config"]["replicas"]
        if scaling["max_replicas"] is None:
            scaling["max_replicas"] = max(scaling["min_replicas"], replicas or 1)
        if scaling["min_replicas"] > scaling["max_replicas"]:
            raise ValidationError({"min_replicas": ["Must not exceed max_replicas."]}, "scaling_config")
        if replicas is None:
            data["deployment_config"]["replicas"] = scaling["min_replicas"]
        elif not scaling["min_replicas"] <= replicas <= scaling["max_replicas"]:
            raise ValidationError({"replicas": ["Must lie between scaling_config's min_replicas and max_replicas."]},
                                  "deployment_config")


class DeploymentAcceptedSchema(Schema):
    id = fields.UUID()
    status = fields.String()
    endpoint = fields.String(metadata={"description": "the endpoint's name"})
    endpoint_url = fields.String(metadata={"description": "where to predict: POST {instances: [...]}"})
    url = fields.String(metadata={"description": "the deployment: poll it to follow the rollout"})


class TransitionSchema(Schema):
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    reason = fields.String()
    at = UtcDateTime()


class DeploymentSchema(Schema):
    id = fields.UUID()
    endpoint = fields.Function(lambda deployment: deployment.endpoint_name)
    environment = fields.Function(lambda deployment: deployment.environment)
    model_id = fields.UUID()
    version = fields.Integer()
    artifact_sha256 = fields.String()
    strategy = fields.String()
    # Percent of traffic per step (an A/B arm's one step is its share, which may be fractional).
    steps = fields.List(fields.Float())
    step = fields.Integer(metadata={"description": "index of the step whose traffic is in place; -1: none yet"})
    status = fields.String(metadata={"description": ", ".join(STATUSES)})
    reason = fields.String(allow_none=True)
    previous_id = fields.UUID(allow_none=True, metadata={"description": "the deployment a rollback returns to"})
    config = fields.Dict()
    health = fields.List(fields.Dict(), metadata={"description": "the health checks' results, in order"})
    requested_by = fields.String()
    created_at = UtcDateTime()
    live_at = UtcDateTime(allow_none=True)
    ended_at = UtcDateTime(allow_none=True)
    transitions = fields.List(fields.Nested(TransitionSchema))


class DeploymentListArgs(ListArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))


class ManifestArgs(Schema):
    format = fields.String(load_default="yaml", validate=validate.OneOf(("yaml", "json")),
                           metadata={"description": "yaml: one document per object; json: a Kubernetes List"})


class ManifestListSchema(Schema):
    """The endpoint's Deployment, Service and HorizontalPodAutoscaler as one Kubernetes List."""

    apiVersion = fields.String()
    kind = fields.String()
    items = fields.List(fields.Dict())


class RouteSchema(Schema):
    deployment_id = fields.UUID()
    version = fields.Integer()
    weight = fields.Float(metadata={"description": "percent of the endpoint's traffic, to the hundredth (0.5: half "
                                                   "a percent)"})
    shadow = fields.Boolean(dump_default=False, metadata={
        "description": "answers a copy of every request (a shadow A/B test's B); its answers are recorded, never "
                       "returned, and its weight is not part of the others' 100"})


SALT_DESCRIPTION = ("what units are hashed with to place them among the routes (an A/B test's id); "
                    "null: the endpoint's name")


class TrafficSchema(Schema):
    effective_at = UtcDateTime()
    routes = fields.List(fields.Nested(RouteSchema))
    reason = fields.String()
    deployment_id = fields.UUID(allow_none=True)
    salt = fields.String(allow_none=True, metadata={"description": SALT_DESCRIPTION})


class ReplicaDeploymentSchema(Schema):
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    requests = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    errors = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    error_rate = fields.Float(allow_nan=False)
    rows = fields.Integer(strict=True, validate=validate.Range(min=0))
    latency_ms = fields.Dict(keys=fields.String(validate=validate.OneOf(("p50", "p95", "p99"))),
                             values=fields.Float(allow_nan=False, allow_none=True))


class ReplicaReportSchema(StrictSchema):
    """What a serving replica reports of an endpoint, every few seconds."""

    replica = fields.String(required=True, validate=validate.Length(min=1, max=255))
    window_seconds = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=1, max=3600))
    # By deployment id, not version: an A/B test may serve version 3 of two models on one endpoint.
    versions = fields.Dict(keys=fields.String(validate=validate.Regexp(UUID_TEXT)),
                           values=fields.Nested(ReplicaDeploymentSchema), required=True,
                           validate=validate.Length(max=100),
                           metadata={"description": "per deployment id: its version, requests, errors, error_rate, "
                                                    "rows, latency_ms"})
    cpu_percent = fields.Float(load_default=None, allow_none=True, allow_nan=False)
    rss_bytes = fields.Integer(load_default=None, allow_none=True, strict=True)


class ReplicaSchema(Schema):
    replica = fields.String()
    reported_at = UtcDateTime()
    healthy = fields.Boolean(metadata={"description": "reported within the last 10 s"})
    cpu_percent = fields.Float(allow_none=True)
    rss_bytes = fields.Integer(allow_none=True)
    window_seconds = fields.Float()
    versions = fields.Dict(metadata={"description": "per deployment id: its version, requests, errors, error_rate, "
                                                    "latency_ms"})


class EndpointSchema(Schema):
    name = fields.String()
    model_id = fields.UUID()
    environment = fields.String()
    url = fields.String(metadata={"description": "where to predict: POST {instances: [...]}"})
    live_version = fields.Integer(allow_none=True)
    live_deployment_id = fields.UUID(allow_none=True)
    candidate_version = fields.Integer(allow_none=True)
    candidate_deployment_id = fields.UUID(allow_none=True)
    traffic = fields.Nested(TrafficSchema, allow_none=True, metadata={"description": "in effect now"})
    pending_traffic = fields.Nested(TrafficSchema, allow_none=True,
                                    metadata={"description": "a switch written ahead, in effect from its effective_at"})
    scaling_config = fields.Dict(allow_none=True, metadata={"description": "the live deployment's"})
    replicas = fields.List(fields.Nested(ReplicaSchema), metadata={"description": "serving replicas and their health"})
    created_at = UtcDateTime()


class HistoryArgs(Schema):
    at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=None,
                              metadata={"description": "ISO 8601 with its offset; default now"})


class ServedAtSchema(Schema):
    endpoint = fields.String()
    at = UtcDateTime()
    routes = fields.List(fields.Nested(RouteSchema), metadata={"description": "empty: nothing served then"})
    salt = fields.String(allow_none=True, metadata={"description": SALT_DESCRIPTION})
    since = UtcDateTime(allow_none=True, metadata={"description": "when this traffic took effect"})
    until = UtcDateTime(allow_none=True, metadata={"description": "when the next change took effect; null: still"})


class DesiredRouteSchema(Schema):
    effective_at = fields.String()
    routes = fields.List(fields.Nested(RouteSchema))
    salt = fields.String(allow_none=True, metadata={"description": SALT_DESCRIPTION})


class DesiredStateSchema(Schema):
    """What serving replicas poll: the traffic in effect, the switches ahead, and how to load each version."""

    endpoint = fields.String()
    model_id = fields.String()
    now = fields.String()
    changes = fields.List(fields.Nested(DesiredRouteSchema))
    deployments = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={
        "description": "per deployment id: its model_id (an A/B test's other arm may be another model's), version, "
                       "artifact_sha256, flavor, features, profile, timeout"})
