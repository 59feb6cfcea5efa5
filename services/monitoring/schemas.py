"""Monitoring's request and answer bodies (the records themselves are checked in records.py: one bad
record in a batch must cost only itself, which a schema failing the whole body would not do)."""

from __future__ import annotations

from marshmallow import Schema, fields

from shared.schemas import StrictSchema


def _raw(description: str) -> fields.Raw:
    return fields.Raw(metadata={"description": description})


class PredictionsBodySchema(StrictSchema):
    """One record, or `{records: [...]}` of them."""

    records = fields.Raw(metadata={"description": "several records (each with the fields below)", "type": "array",
                                   "items": {"type": "object"}})
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


class ActualsBodySchema(StrictSchema):
    """One actual, or `{records: [...]}` of them."""

    records = fields.Raw(metadata={"description": "several actuals (each with the fields below)", "type": "array",
                                   "items": {"type": "object"}})
    model_id = _raw("the model whose prediction it was (required)")
    request_id = _raw("the prediction's request id (required)")
    actual = _raw("the true outcome (required); a later one for the same prediction replaces it")


class MetricsBodySchema(StrictSchema):
    """One model's metrics, or `{records: [...]}` of them."""

    records = fields.Raw(metadata={"description": "several records (each with the fields below)", "type": "array",
                                   "items": {"type": "object"}})
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
