"""Deployment tables: endpoints, the deployments made on them with every transition, and the traffic
history that says which version served when.

Only the deployment service writes these. A deployment row carries what serving needs to load its
version (artifact, flavor, features, profile), copied from the registry when it was requested, so a
replica never asks the registry and a later edit of the version changes nothing that is live.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, JSONType, UUIDPrimaryKey, utcnow

ENVIRONMENTS = ("development", "staging", "production")
STRATEGIES = ("blue_green", "canary")
BLUE_GREEN, CANARY = STRATEGIES
# An A/B test's arm B (ab_tests.py): takes its share of the units beside the live A until the test ends.
AB_ARM = "ab_test"

STATUSES = ("pending", "deploying", "health_checking", "canary", "switching", "live", "superseded", "failed",
            "rolled_back")
PENDING, DEPLOYING, HEALTH_CHECKING, CANARY_STEPS, SWITCHING, LIVE, SUPERSEDED, FAILED, ROLLED_BACK = STATUSES
# A deployment in one of these holds its endpoint: a second one there is a 409 until it ends.
IN_PROGRESS = (PENDING, DEPLOYING, HEALTH_CHECKING, CANARY_STEPS, SWITCHING)
# Traffic moved (or is moving) to the candidate in these; a rollback returns it.
SERVING = (CANARY_STEPS, SWITCHING, LIVE)


class Endpoint(UUIDPrimaryKey, Base):
    __tablename__ = "endpoints"

    # `<model-name-slug>-<environment>`, a DNS-1035 label: also the Kubernetes name of its serving pool.
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    environment: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    __table_args__ = (sa.UniqueConstraint("model_id", "environment", name="uq_endpoints_model_id_environment"),)


class Deployment(UUIDPrimaryKey, Base):
    __tablename__ = "deployments"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version: Mapped[int] = mapped_column(sa.Integer)
    artifact_sha256: Mapped[str] = mapped_column(sa.String(64))
    flavor: Mapped[str | None] = mapped_column(sa.String(32))
    features: Mapped[list] = mapped_column(JSONType, default=list)
    profile: Mapped[dict | None] = mapped_column(JSONType)
    strategy: Mapped[str] = mapped_column(sa.String(16), default=BLUE_GREEN)
    # Canary: the candidate's percent of traffic at each step, ending at 100; blue-green: [100].
    steps: Mapped[list] = mapped_column(JSONType, default=list)
    step_pause_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    # How far the rollout got: the index of the step whose traffic is in place (-1: none yet).
    step: Mapped[int] = mapped_column(sa.Integer, default=-1)
    # deployment_config, health_check_config, scaling_config and monitoring_config, as validated.
    config: Mapped[dict] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default=PENDING)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    # The deployment live on the endpoint when this one was asked for: what a rollback returns to.
    previous_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    health: Mapped[list] = mapped_column(JSONType, default=list)
    requested_by: Mapped[str] = mapped_column(sa.String(255))
    requested_by_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    live_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # When the rollout's next task is due: a sweep re-sends a task that never arrived (broker blip).
    next_action_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_deployments_model_id_created_at", "model_id", "created_at", "id"),
        sa.Index("ix_deployments_endpoint_id_status", "endpoint_id", "status"),
        sa.Index("ix_deployments_status_next_action_at", "status", "next_action_at"),
    )


class Transition(UUIDPrimaryKey, Base):
    __tablename__ = "deployment_transitions"

    deployment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("deployments.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(sa.String(16))
    to_status: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    __table_args__ = (sa.Index("ix_deployment_transitions_deployment_id_at", "deployment_id", "at"),)


class TrafficChange(Base):
    """From `effective_at` on, the endpoint's traffic goes to `routes` ([{deployment_id, version, weight}],
    weight a percent, fractions allowed) and a unit meets the route its hash with `salt` places it in; a
    route with `shadow: true` answers a copy of every request besides, never returned (traffic.route).

    Rows are never updated: the endpoint's history is the sequence, and the version that served at a
    moment is in the last row effective by then. A switch is written a few seconds ahead so that every
    replica knows it before it takes effect and all switch at the same instant (see traffic.py).
    """

    __tablename__ = "endpoint_traffic"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"))
    effective_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    routes: Mapped[list] = mapped_column(JSONType)
    reason: Mapped[str] = mapped_column(sa.Text)
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    # What units are hashed with (an A/B test's id, so its arms are drawn afresh and apart from any
    # earlier split); None: the endpoint's name, which keeps a canary's units where they were.
    salt: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (sa.Index("ix_endpoint_traffic_endpoint_id_effective_at", "endpoint_id", "effective_at", "id"),)


class ReplicaReport(Base):
    """What a serving replica last said of an endpoint: its request counts, errors and latency per deployment
    over a recent window, and its CPU and memory. The rollout's observation reads these."""

    __tablename__ = "replica_reports"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
                                                   primary_key=True)
    replica: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    reported_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    window_seconds: Mapped[float] = mapped_column(sa.Float)
    # str(deployment id) -> {version, requests, errors, error_rate, rows, latency_ms: {p50, p95, p99}}: by
    # deployment, not version, as an A/B test may serve version 3 of two models on one endpoint.
    versions: Mapped[dict] = mapped_column(JSONType, default=dict)
    cpu_percent: Mapped[float | None] = mapped_column(sa.Float)
    rss_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)


AB_TYPES = ("traffic_split", "shadow")
AB_STATUSES = ("draft", "running", "stopped", "concluded")
DRAFT, RUNNING, STOPPED, CONCLUDED = AB_STATUSES


class ABTest(UUIDPrimaryKey, Base):
    """Two model versions compared on one endpoint (model A's, in `environment`): B takes `traffic_split` of
    its units (traffic_split), or a copy of A's traffic whose answers are never returned (shadow)."""

    __tablename__ = "ab_tests"

    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    type: Mapped[str] = mapped_column(sa.String(16))
    model_a_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version_a: Mapped[int] = mapped_column(sa.Integer)
    model_b_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version_b: Mapped[int] = mapped_column(sa.Integer)
    model_type: Mapped[str] = mapped_column(sa.String(32))
    environment: Mapped[str] = mapped_column(sa.String(16))
    traffic_split: Mapped[float] = mapped_column(sa.Float)
    # Names as the test knows them (services/deployment/ab_metrics.py): success metrics a list of names,
    # guardrails a list of {name, margin, relative, lower_is_better}.
    success_metrics: Mapped[list] = mapped_column(JSONType)
    guardrail_metrics: Mapped[list] = mapped_column(JSONType)
    min_sample_size: Mapped[int] = mapped_column(sa.Integer)
    max_duration_days: Mapped[int] = mapped_column(sa.Integer)
    significance_level: Mapped[float] = mapped_column(sa.Float)
    mixing_variance: Mapped[float] = mapped_column(sa.Float)
    minimum_detectable_effect: Mapped[float] = mapped_column(sa.Float)
    # The brief's planning figures: duration (days) and sample_size (units).
    test_config: Mapped[dict] = mapped_column(JSONType, default=dict)
    auto_promote: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    status: Mapped[str] = mapped_column(sa.String(16), default=DRAFT)
    verdict: Mapped[str | None] = mapped_column(sa.String(32))
    summary: Mapped[str | None] = mapped_column(sa.Text)
    # What the definition leaves doubtful (too few units for the effect sought), said when it was created.
    warnings: Mapped[list] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(sa.String(255))
    created_by_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Set when it starts: the endpoint it runs on, A's live deployment there and B's arm deployment.
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    deployment_a_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    deployment_b_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, unique=True)

    __table_args__ = (sa.Index("ix_ab_tests_created_at", "created_at", "id"),
                      sa.Index("ix_ab_tests_status", "status"))
