"""The predictions store: one row per prediction a model served (or failed to serve).

Only monitoring writes it. A request id is stored once per model version and UTC day of its prediction
time (the unique key), so a batch the ingest worker runs twice, or a record sent twice, leaves one row;
a shadow A/B test's two versions of one model each keep their answer to the request. Reads
go by model and time. On Postgres the table is partitioned by that day (partitions.py): old days are
dropped whole, and the unique key, which must hold the partition key, is checked within one partition.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UUIDPrimaryKey, utcnow

# None is SQL NULL here, not the JSON value null: "no features" must read as IS NULL.
NullableJSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# A prediction's features are read whole, never searched inside: Postgres's json keeps them as the text it
# hands back, where jsonb converts each row back to text on every read (migration 0029).
FeaturesJSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSON(none_as_null=True), "postgresql")

REQUEST_ID_LENGTH = 255
NAME_LENGTH = 255


class Prediction(UUIDPrimaryKey, Base):
    __tablename__ = "predictions"

    # The UTC day of predicted_at: the partition key, hence part of the primary and the unique key.
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version: Mapped[int] = mapped_column(sa.Integer)
    endpoint: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    request_id: Mapped[str] = mapped_column(sa.String(REQUEST_ID_LENGTH))
    unit_id: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    features: Mapped[dict | None] = mapped_column(FeaturesJSON)
    # NULL only for a failed prediction, which has an error instead.
    prediction: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    probabilities: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    # What the sender said about the prediction (a user id, a session, a page): kept as given.
    context: Mapped[dict | None] = mapped_column(NullableJSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    predicted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("model_id", "request_id", "version", "day",
                            name="uq_predictions_model_id_request_id_version_day"),
        sa.Index("ix_predictions_model_id_predicted_at", "model_id", "predicted_at"),
        {"postgresql_partition_by": "RANGE (day)"},
    )


class Actual(Base):
    """The true outcome of a prediction, by its model and request id: apart from the prediction, so that
    it may arrive before or days after it, and a correction replaces it. Joined at query time."""

    __tablename__ = "actuals"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(REQUEST_ID_LENGTH), primary_key=True)
    actual: Mapped[Any] = mapped_column(NullableJSON, nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class RecordedMetric(UUIDPrimaryKey, Base):
    """One value of a metric a model's users computed themselves (POST /api/v1/monitoring/metrics), at
    the time it measures: one row per metric, so that a metric's series is one indexed range."""

    __tablename__ = "recorded_metrics"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[float] = mapped_column(sa.Float)
    measured_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    context: Mapped[dict | None] = mapped_column(NullableJSON)
    # The A/B test and arm whose traffic the value measures, if any (the A/B analysis reads them).
    ab_test_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    arm: Mapped[str | None] = mapped_column(sa.String(64))
    recorded_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    __table_args__ = (sa.Index("ix_recorded_metrics_model_id_name_measured_at", "model_id", "name", "measured_at"),
                      # The A/B analysis's read (ab_arms.recorded_sums); most rows belong to no test.
                      sa.Index("ix_recorded_metrics_ab_test_id_name", "ab_test_id", "name",
                               postgresql_where=sa.text("ab_test_id IS NOT NULL"),
                               sqlite_where=sa.text("ab_test_id IS NOT NULL")))


class PerformanceHour(Base):
    """What a version's predictions of one UTC hour add up to, with their actuals (tally.Tally's sums):
    what performance and the operating metrics read. Recomputed from the hour's rows when they or their
    actuals changed (rollups.py)."""

    __tablename__ = "performance_hours"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    hour: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    predictions: Mapped[int] = mapped_column(sa.Integer)
    errors: Mapped[int] = mapped_column(sa.Integer)
    latency_bins: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    outputs: Mapped[int] = mapped_column(sa.Integer)
    output_sum: Mapped[float] = mapped_column(sa.Float)
    feature_values: Mapped[int] = mapped_column(sa.BigInteger)
    missing_values: Mapped[int] = mapped_column(sa.BigInteger)
    labeled: Mapped[int] = mapped_column(sa.Integer)
    label_pairs: Mapped[list | None] = mapped_column(NullableJSON)
    score_bins: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    unscored: Mapped[int] = mapped_column(sa.Integer)
    scored_pairs: Mapped[int] = mapped_column(sa.Integer)
    squared_error: Mapped[float] = mapped_column(sa.Float)
    absolute_error: Mapped[float] = mapped_column(sa.Float)
    actual_mean: Mapped[float] = mapped_column(sa.Float)
    actual_spread: Mapped[float] = mapped_column(sa.Float)


class StaleHour(Base):
    """A model's hour whose predictions or actuals changed since its tallies were computed: one row per
    change (a stored batch), never updated, so that marking never waits on a lock; the refresh deletes
    the rows it read, and a row committed meanwhile stays for the next."""

    __tablename__ = "stale_hours"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    hour: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_stale_hours_model_id_hour", "model_id", "hour"),)


class VersionBaseline(Base):
    """What a model's version is watched against, as the registry announced it (model_version.registered):
    its reference sample and feature kinds for drift, its feature importances for the drift score's
    weights, and its own metrics (a trained version's test-split scores) for concept drift. Monitoring
    keeps this copy so that its workers need not ask the registry."""

    __tablename__ = "version_baselines"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    model_type: Mapped[str | None] = mapped_column(sa.String(32))
    reference_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    reference_rows: Mapped[int | None] = mapped_column(sa.Integer)
    feature_kinds: Mapped[dict | None] = mapped_column(NullableJSON)
    feature_importances: Mapped[dict | None] = mapped_column(NullableJSON)
    metrics: Mapped[dict | None] = mapped_column(NullableJSON)
    # Numeric feature -> the decile bin edges of its training profile: a sensitive one is stored as its bin.
    bin_edges: Mapped[dict | None] = mapped_column(NullableJSON)
    registered_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class SensitiveFeatures(Base):
    """A model's sensitive features as the registry announced them (model.created, model.updated,
    model.archived): their values are stored protected (sensitive.py). `changed_at` is the announcing
    event's time, so that an older event arriving late changes nothing."""

    __tablename__ = "sensitive_features"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    features: Mapped[list] = mapped_column(NullableJSON, nullable=False)
    changed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class DriftReport(UUIDPrimaryKey, Base):
    """A model version's drift report as computed (by beat's sweep or on a request), with the window and
    correction it was computed for; GET .../drift answers the latest one while it is fresh."""

    __tablename__ = "drift_reports"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version: Mapped[int] = mapped_column(sa.Integer)
    # The window: the last hours of predictions, or the last N of them.
    window_hours: Mapped[int | None] = mapped_column(sa.Integer)
    window_predictions: Mapped[int | None] = mapped_column(sa.Integer)
    correction: Mapped[str] = mapped_column(sa.String(16))
    overall_drift_score: Mapped[float] = mapped_column(sa.Float)
    severity: Mapped[str] = mapped_column(sa.String(16))
    report: Mapped[dict] = mapped_column(NullableJSON, nullable=False)
    computed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_drift_reports_model_id_version_computed_at", "model_id", "version", "computed_at"),)


class DetectedAnomaly(UUIDPrimaryKey, Base):
    """An anomalous bucket of a model's operating metric, recorded once when beat's sweep judged it
    (model_anomalies.record_last_hour), and announced as anomaly.detected."""

    __tablename__ = "detected_anomalies"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    metric: Mapped[str] = mapped_column(sa.String(32))
    granularity: Mapped[str] = mapped_column(sa.String(8))
    bucket_start: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    value: Mapped[float] = mapped_column(sa.Float)
    expected: Mapped[float] = mapped_column(sa.Float)
    score: Mapped[float] = mapped_column(sa.Float)
    direction: Mapped[str] = mapped_column(sa.String(8))
    detected_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.UniqueConstraint("model_id", "metric", "bucket_start",
                                          name="uq_detected_anomalies_model_id_metric_bucket_start"),)


class ReplicaUsage(Base):
    """A serving replica's last CPU and memory, in percent of its deployment's resources, as the deployment
    service announced them (endpoint.usage_reported, every minute): what the cpu and memory rules read."""

    __tablename__ = "replica_usage"

    endpoint: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), primary_key=True)
    replica: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), primary_key=True)
    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    cpu_percent: Mapped[float | None] = mapped_column(sa.Float)
    memory_percent: Mapped[float | None] = mapped_column(sa.Float)
    reported_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_replica_usage_model_id_reported_at", "model_id", "reported_at"),)


class DeletedModel(Base):
    """A model the registry deleted (model.deleted): its alerts resolve and its rules stop, though its
    predictions and reports stay in the window a rule reads."""

    __tablename__ = "deleted_models"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AlertRule(UUIDPrimaryKey, Base):
    """When to alert: `metric` above `threshold` for one model, or for every model (model_id NULL), and
    where to send it (a webhook, signed with the rule's secret). A rule with a deployment_id is one of
    that deployment's alert_thresholds (deployment_rules.py), replaced when another goes live."""

    __tablename__ = "alert_rules"

    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    model_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    metric: Mapped[str] = mapped_column(sa.String(32))
    threshold: Mapped[float] = mapped_column(sa.Float)
    window_minutes: Mapped[int] = mapped_column(sa.Integer)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    webhook_url: Mapped[str | None] = mapped_column(sa.String(2048))
    # Sealed (webhook_secrets.py): "<key id>:<base64>".
    webhook_secret: Mapped[str | None] = mapped_column(sa.String(255))
    created_by: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class Alert(UUIDPrimaryKey, Base):
    """A rule's condition held for a model: firing, then maybe acknowledged, until it resolves. One open
    (firing or acknowledged) alert per rule and model."""

    __tablename__ = "alerts"

    rule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("alert_rules.id", ondelete="CASCADE"))
    model_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    metric: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[float] = mapped_column(sa.Float)  # the last value that kept it firing, then the one that resolved it
    threshold: Mapped[float] = mapped_column(sa.Float)
    fired_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_alerts_rule_id_model_id_state", "rule_id", "model_id", "state"),
                      sa.Index("ix_alerts_fired_at", "fired_at"))


class WebhookDelivery(UUIDPrimaryKey, Base):
    """One attempt to send an alert's change (fired or resolved) to its rule's webhook: the delivery log."""

    __tablename__ = "webhook_deliveries"

    alert_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(sa.String(32))  # alert.fired or alert.resolved
    attempt: Mapped[int] = mapped_column(sa.Integer)
    delivered: Mapped[bool] = mapped_column(sa.Boolean)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    response_excerpt: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[float] = mapped_column(sa.Float)
    attempted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_webhook_deliveries_alert_id_attempted_at", "alert_id", "attempted_at"),)


class ABTestAnalysis(Base):
    """An A/B test as monitoring analyses it: its definition as abtest.started announced it (the deployment
    service owns the test; this is monitoring's copy, so that its workers need not ask), when B's traffic
    began (its first prediction on the endpoint: the arms' window starts there), when it ended (stopped or
    concluded), and the verdict this analysis announced (abtest.decided), once."""

    __tablename__ = "ab_test_analyses"

    ab_test_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    type: Mapped[str] = mapped_column(sa.String(16))
    endpoint: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    model_type: Mapped[str] = mapped_column(sa.String(32))
    model_a_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version_a: Mapped[int] = mapped_column(sa.Integer)
    model_b_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    version_b: Mapped[int] = mapped_column(sa.Integer)
    traffic_split: Mapped[float] = mapped_column(sa.Float)
    success_metrics: Mapped[list] = mapped_column(NullableJSON, nullable=False)
    # {name, margin, relative, lower_is_better} each.
    guardrail_metrics: Mapped[list] = mapped_column(NullableJSON, nullable=False)
    min_sample_size: Mapped[int] = mapped_column(sa.Integer)
    max_duration_days: Mapped[int] = mapped_column(sa.Integer)
    significance_level: Mapped[float] = mapped_column(sa.Float)
    mixing_variance: Mapped[float] = mapped_column(sa.Float)
    # Relative; None when the event did not say (ab_analysis.DEFAULT_RELATIVE_EFFECT then).
    minimum_detectable_effect: Mapped[float | None] = mapped_column(sa.Float)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    traffic_from: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # How far its hours' sums (ABTestHour) and units (ABTestUnit) are computed; None: not at all (ab_hours.py).
    computed_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    units_a: Mapped[int] = mapped_column(sa.Integer, default=0)
    units_b: Mapped[int] = mapped_column(sa.Integer, default=0)
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    verdict: Mapped[str | None] = mapped_column(sa.String(32))
    summary: Mapped[str | None] = mapped_column(sa.Text)


class ABTestLook(UUIDPrimaryKey, Base):
    """One look at an A/B test: its results as GET .../results answers them. The latest carries each metric's
    running always-valid p-value and interval (and its tau^2) into the next, so they survive restarts."""

    __tablename__ = "ab_test_looks"

    ab_test_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("ab_test_analyses.ab_test_id", ondelete="CASCADE"))
    looked_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    results: Mapped[dict] = mapped_column(NullableJSON, nullable=False)

    __table_args__ = (sa.Index("ix_ab_test_looks_ab_test_id_looked_at", "ab_test_id", "looked_at"),)


class ABTestHour(Base):
    """What an A/B test's arm's predictions of one UTC hour of its window add up to (ab_arms.ArmSums but the
    units): a look adds up its hours, recomputing only those that changed since the last (ab_hours.py)."""

    __tablename__ = "ab_test_hours"

    ab_test_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("ab_test_analyses.ab_test_id", ondelete="CASCADE"),
                                                  primary_key=True)
    arm: Mapped[str] = mapped_column(sa.String(1), primary_key=True)
    hour: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), primary_key=True)
    predictions: Mapped[int] = mapped_column(sa.Integer)
    errors: Mapped[int] = mapped_column(sa.Integer)
    latencies: Mapped[int] = mapped_column(sa.Integer)
    latency_sum: Mapped[float] = mapped_column(sa.Float)
    latency_sum_sq: Mapped[float] = mapped_column(sa.Float)
    # [[predicted, actual, count], ...]: a classifier's.
    label_pairs: Mapped[list | None] = mapped_column(NullableJSON)
    scored: Mapped[int] = mapped_column(sa.Integer)
    absolute_error: Mapped[float] = mapped_column(sa.Float)
    squared_error: Mapped[float] = mapped_column(sa.Float)
    squared_error_sq: Mapped[float] = mapped_column(sa.Float)


class ABTestUnit(Base):
    """A unit an A/B test's arm has seen (unit_id, else request_id): distinct units do not add up over hours, so
    each look adds the new ones of the hours it recomputes, and counts those it added (ab_hours.py). Dropped once
    the test's final look is taken."""

    __tablename__ = "ab_test_units"

    ab_test_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("ab_test_analyses.ab_test_id", ondelete="CASCADE"),
                                                  primary_key=True)
    arm: Mapped[str] = mapped_column(sa.String(1), primary_key=True)
    unit: Mapped[str] = mapped_column(sa.String(REQUEST_ID_LENGTH), primary_key=True)


class ABTestStaleHour(Base):
    """An hour of an A/B test's arms' models whose predictions or actuals changed, as the tallies' refresh found
    it (a StaleHour it consumed, rollups.py): the test's next look recomputes the hour, and deletes the mark."""

    __tablename__ = "ab_test_stale_hours"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    ab_test_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("ab_test_analyses.ab_test_id", ondelete="CASCADE"))
    hour: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_ab_test_stale_hours_ab_test_id", "ab_test_id"),)
