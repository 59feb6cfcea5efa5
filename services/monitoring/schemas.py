"""Monitoring's request and answer bodies (the records themselves are checked in records.py: one bad
record in a batch must cost only itself, which a schema failing the whole body would not do)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.monitoring.alerts import METRICS as ALERT_METRICS
from services.monitoring.drift import MAX_WINDOW_ROWS

from shared.ab_schemas import ComparisonSchema, SampleRatioSchema
from shared.pagination import ListArgs
from shared.schemas import StrictSchema, UtcDateTime


def _raw(description: str) -> fields.Raw:
    return fields.Raw(metadata={"description": description})


class _OneOrRecordsSchema(StrictSchema):
    """One record (the fields of the subclass), or `{records: [...]}` of them."""

    records = fields.Raw(metadata={"description": "several records, each with the fields below", "type": "array",
                                   "items": {"type": "object"}})


class PredictionsBodySchema(_OneOrRecordsSchema):
    model_id = _raw("the model that predicted (required)")
    version = _raw("its version; default: the version live on its endpoint (production's first), else its latest")
    endpoint = _raw("the endpoint that answered, if any")
    request_id = _raw("yours, to join actuals later (default: context.request_id, else generated); stored once "
                      "per model")
    unit_id = _raw("whom the prediction was for (default: context.user_id)")
    features = _raw("the inputs, {feature: value}; without them the record counts for performance, not drift")
    prediction = _raw("the prediction: a value, or an object such as {prediction, confidence}")
    probabilities = _raw("each class's probability, {label: p}")
    actual = _raw("the true outcome, if known already")
    context = _raw("anything else about the prediction, kept as given")
    latency_ms = _raw("how long the prediction took")
    timestamp = _raw("when it was made, ISO 8601 with its zone (default: now)")
    error = _raw("why the prediction failed, for a failed one (then no prediction)")


class ActualsBodySchema(_OneOrRecordsSchema):
    model_id = _raw("the model whose prediction it was (required)")
    request_id = _raw("the prediction's request id (required)")
    actual = _raw("the true outcome (required); a later one for the same prediction replaces it")


class MetricsBodySchema(_OneOrRecordsSchema):
    model_id = _raw("the model measured (required)")
    version = _raw("its version; default: the version live on its endpoint (production's first), else its latest")
    metrics = _raw("{name: value} (required): accuracy, precision, recall, f1 (or f1_score), roc_auc in [0, 1]; "
                   "latency (ms), throughput, rmse, mae, log_loss >= 0; r2 <= 1; any other name any finite number")
    context = _raw("anything about the measurement, kept as given; its `timestamp` is when it was measured")
    timestamp = _raw("when it was measured, ISO 8601 with its zone (default: context.timestamp, else now)")
    ab_test_id = _raw("the A/B test whose traffic it measures")
    arm = _raw("the test's arm (A or B)")


class RejectedRecordSchema(Schema):
    index = fields.Integer(metadata={"description": "the record's position in `records`"})
    reason = fields.String()


class PredictionsAcceptedSchema(Schema):
    accepted = fields.Integer(metadata={"description": "records stored now or before (a request id seen already)"})
    stored = fields.Integer()
    duplicates = fields.Integer(metadata={"description": "records whose request id was stored for the model before"})
    rejected = fields.List(fields.Nested(RejectedRecordSchema))


class ActualsAcceptedSchema(Schema):
    accepted = fields.Integer()
    rejected = fields.List(fields.Nested(RejectedRecordSchema))


class MetricsAcceptedSchema(Schema):
    accepted = fields.Integer(metadata={"description": "records stored"})
    metrics = fields.Integer(metadata={"description": "metric values stored"})
    rejected = fields.List(fields.Nested(RejectedRecordSchema))


class PerformanceArgs(StrictSchema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=366),
                          metadata={"description": "how many days back from now"})
    version = fields.Integer(load_default=None, validate=validate.Range(min=1),
                             metadata={"description": "one version only (default: all of them)"})
    granularity = fields.String(load_default="day", validate=validate.OneOf(("hour", "day")))


class PerformanceFiguresSchema(Schema):
    predictions = fields.Integer()
    errors = fields.Integer(metadata={"description": "predictions that failed"})
    error_rate = fields.Float(allow_none=True, metadata={"description": "errors / predictions"})
    throughput = fields.Float(metadata={"description": "predictions per second"})
    latency_p50_ms = fields.Float(allow_none=True)
    latency_p95_ms = fields.Float(allow_none=True)
    latency_p99_ms = fields.Float(allow_none=True)
    with_actuals = fields.Integer(metadata={"description": "predictions scored: with an actual, not failed"})
    accuracy = fields.Float(allow_none=True, metadata={"description": "classification"})
    precision = fields.Float(allow_none=True, metadata={"description": "classification: binary (1 positive) or macro"})
    recall = fields.Float(allow_none=True)
    f1 = fields.Float(allow_none=True)
    roc_auc = fields.Float(allow_none=True, metadata={"description": "binary, where every scored prediction has "
                                                                     "the positive class's probability"})
    rmse = fields.Float(allow_none=True, metadata={"description": "regression and forecasting"})
    mae = fields.Float(allow_none=True)
    r2 = fields.Float(allow_none=True)
    metrics = fields.Dict(keys=fields.String(), values=fields.Float(),
                          metadata={"description": "recorded metrics' means (POST /api/v1/monitoring/metrics)"})


class PerformanceBucketSchema(PerformanceFiguresSchema):
    start = fields.String(metadata={"description": "the bucket's first instant, UTC"})


class PerformanceSchema(Schema):
    model_id = fields.String()
    type = fields.String()
    days = fields.Integer()
    granularity = fields.String()
    version = fields.Integer(allow_none=True)
    since = fields.String()
    until = fields.String()
    summary = fields.Nested(PerformanceFiguresSchema)
    by_version = fields.Dict(keys=fields.String(), values=fields.Nested(PerformanceFiguresSchema))
    series = fields.List(fields.Nested(PerformanceBucketSchema),
                         metadata={"description": "buckets with predictions or metrics, oldest first"})


class DriftArgs(StrictSchema):
    hours = fields.Integer(load_default=None, validate=validate.Range(min=1, max=24 * 366), metadata={
        "description": "the current window: the last hours of predictions (default MODELYARD_DRIFT_WINDOW_HOURS, 24)"})
    predictions = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_WINDOW_ROWS), metadata={
        "description": "the current window: the last N predictions with features, instead of hours"})
    version = fields.Integer(load_default=None, validate=validate.Range(min=1),
                             metadata={"description": "default: the live version (production's first), else the latest"})
    correction = fields.String(load_default="none", validate=validate.OneOf(("none", "bh")),
                               metadata={"description": "bh: Benjamini-Hochberg across the p-value tests"})
    refresh = fields.Boolean(load_default=False, metadata={
        "description": "compute the report now rather than answer a stored one younger than "
                       "MODELYARD_DRIFT_FRESH_SECONDS (900)"})

    @validates_schema
    def _one_window(self, data, **_):
        if data.get("hours") is not None and data.get("predictions") is not None:
            raise ValidationError("Give the window as hours or as predictions, not both.", "predictions")


class FeatureDriftSchema(Schema):
    name = fields.String()
    kind = fields.String(metadata={"description": "as tested: numeric, or categorical (5 values or fewer count so)"})
    test = fields.String(metadata={"description": "ks, chi_square, z, wasserstein, jensen_shannon"})
    statistic = fields.Float()
    p_value = fields.Float(allow_none=True)
    p_value_adjusted = fields.Float(metadata={"description": "with correction=bh"})
    threshold = fields.Float()
    drifted = fields.Boolean()
    psi = fields.Float(allow_none=True)
    missing_rate_change = fields.Float()
    reference_rows = fields.Integer()
    current_rows = fields.Integer()
    histogram = fields.Dict(allow_none=True, metadata={
        "description": "what PSI compares, for a chart: bins (a numeric feature's bin edges, one more than the "
                       "shares; else its values, the 20 most common, the rest as one), and each side's share of "
                       "its present values per bin (reference, current). Absent from reports stored before."})


CORRECTIONS = ("none", "bh")


def _model_or_dataset(data: dict, model_only: tuple[str, ...]) -> None:
    if (data.get("dataset_id") is None) == (data.get("model_id") is None):
        raise ValidationError("Give a dataset_id, or a model_id.", "dataset_id")
    given = [name for name in model_only if data.get(name) is not None]
    if data.get("dataset_id") is not None and given:
        raise ValidationError({name: ["Only with a model_id."] for name in given})


class DriftWindowSchema(StrictSchema):
    hours = fields.Integer(validate=validate.Range(min=1, max=24 * 366),
                           metadata={"description": "the last hours of predictions"})
    predictions = fields.Integer(validate=validate.Range(min=1, max=MAX_WINDOW_ROWS),
                                 metadata={"description": "the last N predictions with features"})

    @validates_schema
    def _one(self, data, **_):
        if ("hours" in data) == ("predictions" in data):
            raise ValidationError("Give hours or predictions.", "hours")


class DriftReferenceSchema(StrictSchema):
    dataset_id = fields.UUID(load_default=None, metadata={"description": "a dataset the registry holds"})
    model_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                             metadata={"description": "a model's id or name: its version's reference sample"})
    version = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1), metadata={
        "description": "with model_id; default the live version (production's first), else the latest"})

    @validates_schema
    def _one_side(self, data, **_):
        _model_or_dataset(data, ("version",))


class DriftCurrentSchema(DriftReferenceSchema):
    model_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                             metadata={"description": "a model's id or name: its version's predictions in `window`"})
    window = fields.Nested(DriftWindowSchema, load_default=None, metadata={
        "description": "with model_id; default the last MODELYARD_DRIFT_WINDOW_HOURS (24) hours"})

    @validates_schema
    def _one_side(self, data, **_):
        _model_or_dataset(data, ("version", "window"))


class DriftOptionsSchema(StrictSchema):
    correction = fields.String(load_default="none", validate=validate.OneOf(CORRECTIONS),
                               metadata={"description": "bh: Benjamini-Hochberg across the p-value tests"})


class DriftReportRequestSchema(StrictSchema):
    reference = fields.Nested(DriftReferenceSchema, required=True)
    current = fields.Nested(DriftCurrentSchema, required=True)
    options = fields.Nested(DriftOptionsSchema, load_default=None)
    correction = fields.String(load_default=None, validate=validate.OneOf(CORRECTIONS),
                               metadata={"description": "the same as options.correction (the older spelling)"})

    @validates_schema
    def _one_correction(self, data, **_):
        if data.get("options") is not None and data.get("correction") is not None:
            raise ValidationError("Give the correction in options only.", "correction")


class DriftReportSchema(Schema):
    model_id = fields.String()
    version = fields.Integer()
    computed_at = fields.String()
    id = fields.String(metadata={"description": "a model's report: the stored report's id"})
    correction = fields.String()
    reference = fields.Dict()
    window = fields.Dict(metadata={"description": "a model's report: the predictions compared"})
    current = fields.Dict(metadata={"description": "an ad hoc report's current side: a dataset, or a model "
                                                  "version's window of predictions"})
    overall_drift_score = fields.Float(metadata={
        "description": "the share of features that drifted, weighted by the version's feature importances where "
                       "it has them"})
    weighting = fields.String(metadata={"description": "importance, or share (unweighted)"})
    severity = fields.String(metadata={"description": "none, low (< 0.2), medium (< 0.4), high (< 0.6), critical"})
    drifted_features = fields.List(fields.String())
    features = fields.List(fields.Nested(FeatureDriftSchema))
    concept_drift = fields.Dict(allow_none=True, metadata={
        "description": "a model's report: the window's predictions with actuals against the version's test metric "
                       "(accuracy by a one-sided binomial test, rmse by a one-sided t-test on squared errors); "
                       "null without a baseline metric"})
    prediction_drift = fields.Nested(FeatureDriftSchema, allow_none=True, metadata={
        "description": "a model's report: its predictions against its predictions of the reference sample "
                       "(null for versions trained before those were kept)"})


class AnomaliesArgs(StrictSchema):
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=92),
                          metadata={"description": "the whole hours or days before now to judge"})
    granularity = fields.String(load_default="hour", validate=validate.OneOf(("hour", "day")))
    version = fields.Integer(load_default=None, validate=validate.Range(min=1),
                             metadata={"description": "default: every version of the model"})
    threshold = fields.Float(load_default=5.0, validate=validate.Range(min=0, min_inclusive=False, max=100),
                             metadata={"description": "the modified z-score beyond which a bucket is anomalous"})


class AnomaliesSchema(Schema):
    model_id = fields.String()
    version = fields.Integer(allow_none=True)
    days = fields.Integer()
    granularity = fields.String()
    threshold = fields.Float()
    since = fields.String(allow_none=True)
    until = fields.String(allow_none=True)
    metrics = fields.Dict(metadata={
        "description": "per metric (latency_p95_ms, error_rate, throughput, mean_prediction, missing_rate): its "
                       "`series` of buckets (value, expected, score, baseline rolling|seasonal), the anomalous "
                       "`points` and the `spans` they make"})


def _threshold(**options):
    return fields.Float(allow_nan=False, **options, validate=validate.Range(min=-1e12, max=1e12), metadata={
        "description": "fires above it: drift_score in [0, 1], performance_degradation and error_rate in percent "
                       "[0, 100], latency_p95_ms in milliseconds (at most an hour), cpu_percent and memory_percent in "
                       "percent of a replica's resources [0, 100]"})


class AlertRuleCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    model_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255), metadata={
        "description": "the model's id or name; none: every model"})
    metric = fields.String(required=True, validate=validate.OneOf(ALERT_METRICS))
    threshold = _threshold(required=True)
    window_minutes = fields.Integer(load_default=60, validate=validate.Range(min=1, max=7 * 1440), metadata={
        "description": "error_rate and latency_p95_ms: the minutes of predictions they are computed over; "
                       "cpu_percent and memory_percent: how recent a replica's figure must be"})
    enabled = fields.Boolean(load_default=True)
    webhook_url = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=2048),
                                metadata={"description": "http(s) URL of a public address; signed POSTs"})


class AlertRulePatchSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    threshold = _threshold()
    window_minutes = fields.Integer(validate=validate.Range(min=1, max=7 * 1440))
    enabled = fields.Boolean()
    webhook_url = fields.String(allow_none=True, validate=validate.Length(min=1, max=2048))


class AlertRuleSchema(Schema):
    id = fields.String()
    name = fields.String()
    model_id = fields.String(allow_none=True)
    deployment_id = fields.String(allow_none=True, metadata={
        "description": "set on the rules a live deployment's alert_thresholds made; the next one replaces them"})
    metric = fields.String()
    threshold = fields.Float()
    window_minutes = fields.Integer()
    enabled = fields.Boolean()
    webhook_url = fields.String(allow_none=True)
    webhook_secret = fields.String(metadata={
        "description": "shown once, when the webhook is set: the key of each delivery's X-Modelyard-Signature"})
    created_by = fields.String()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class AlertRuleListArgs(ListArgs):
    model_id = fields.UUID(metadata={"description": "the rules watching this model: its own and those for every model"})


class AlertListArgs(ListArgs):
    state = fields.String(validate=validate.OneOf(("firing", "acknowledged", "resolved")))
    model_id = fields.UUID()
    rule_id = fields.UUID()


class WebhookDeliverySchema(Schema):
    event = fields.String()
    attempt = fields.Integer()
    delivered = fields.Boolean()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    response_excerpt = fields.String(allow_none=True)
    duration_ms = fields.Float()
    attempted_at = UtcDateTime()
    next_attempt_at = UtcDateTime(allow_none=True)


class AlertSchema(Schema):
    id = fields.String()
    rule_id = fields.String()
    model_id = fields.String()
    metric = fields.String()
    state = fields.String(metadata={"description": "firing, acknowledged or resolved"})
    value = fields.Float(metadata={"description": "the last value that kept it open, or the one that resolved it"})
    threshold = fields.Float()
    fired_at = UtcDateTime()
    acknowledged_at = UtcDateTime(allow_none=True)
    acknowledged_by = fields.String(allow_none=True)
    resolved_at = UtcDateTime(allow_none=True)
    deliveries = fields.List(fields.Nested(WebhookDeliverySchema), metadata={
        "description": "one alert: each attempt to send its changes to the rule's webhook"})


class ABTestMetricSchema(ComparisonSchema):
    """One metric of a running A/B test: ab_statistics' figures, and how they were tested."""

    name = fields.String()
    role = fields.String(metadata={"description": "success or guardrail"})
    method = fields.String(metadata={"description": "the test: two-proportion z-test, Welch's t-test, or Welch's "
                                                    "t-test on the delta method's linearisation (f1, rmse, macro "
                                                    "precision and recall)"})
    lower_is_better = fields.Boolean()
    mixing_variance = fields.Float(allow_none=True, metadata={
        "description": "the sequential test's tau^2, in the metric's squared units (null until it can be fixed)"})
    margin = fields.Float(allow_none=True, metadata={"description": "a guardrail's margin as tested, in the "
                                                                    "metric's units"})
    relative_margin = fields.Float(allow_none=True, metadata={"description": "a guardrail's margin as a share of "
                                                                             "A's estimate, when it is one"})
    status = fields.String(metadata={"description": "a guardrail: holds, breached or undecided, by its always-valid "
                                                    "interval against the margin"})


class ABTestArmsSchema(Schema):
    A = fields.Integer()
    B = fields.Integer()


class ABTestSampleRatioSchema(SampleRatioSchema):
    weights = fields.List(fields.Float(), metadata={"description": "the intended shares of A and B"})


class ABTestWindowSchema(Schema):
    start = fields.String(allow_none=True, metadata={"description": "B's first prediction on the endpoint "
                                                                    "(null before it has made one)"})
    end = fields.String(metadata={"description": "the look, or the test's end"})


class ABTestDecisionSchema(Schema):
    verdict = fields.String(metadata={"description": "b_wins, a_wins, no_difference or invalid"})
    summary = fields.String()


class ABTestResultsSchema(Schema):
    ab_test_id = fields.String()
    name = fields.String()
    looked_at = fields.String(metadata={"description": "when these figures were computed, ISO 8601 UTC"})
    window = fields.Nested(ABTestWindowSchema)
    insufficient_data = fields.Boolean(metadata={"description": "an arm has no units yet: no p-values"})
    min_sample_size = fields.Integer(metadata={"description": "units per arm before a verdict"})
    units = fields.Nested(ABTestArmsSchema, metadata={"description": "distinct unit_id (else request_id) per arm"})
    srm = fields.Nested(ABTestSampleRatioSchema)
    metrics = fields.List(fields.Nested(ABTestMetricSchema))
    decision = fields.Nested(ABTestDecisionSchema, allow_none=True)
