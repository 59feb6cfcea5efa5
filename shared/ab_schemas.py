"""The answer shapes of shared.ab_statistics' figures, one per figure, for every service that answers them: the
statistics on numbers a user already has (deployment) and a running test's results (monitoring)."""

from __future__ import annotations

from marshmallow import Schema, fields


class NonInferioritySchema(Schema):
    margin = fields.Float()
    lower_is_better = fields.Boolean()
    statistic = fields.Float(allow_none=True)
    p_value = fields.Float(allow_none=True)
    confidence_bound = fields.Float(allow_none=True)
    passed = fields.Boolean(allow_none=True, data_key="pass", attribute="pass")
    reason = fields.String(allow_none=True)


def _interval() -> fields.List:
    return fields.List(fields.Float(), allow_none=True, metadata={"description": "[low, high]"})


class ComparisonSchema(Schema):
    """One metric, B against A: every figure that is null says why in `reasons`."""

    kind = fields.String()
    n_a = fields.Float()
    n_b = fields.Float()
    insufficient_data = fields.Boolean()
    estimate_a = fields.Float(allow_none=True)
    estimate_b = fields.Float(allow_none=True)
    difference = fields.Float(allow_none=True, metadata={"description": "B - A"})
    ci = _interval()
    relative_lift = fields.Float(allow_none=True, metadata={"description": "(B - A) / |A|"})
    ci_relative = _interval()
    statistic = fields.Float(allow_none=True, metadata={"description": "z for a proportion, Welch's t for a mean"})
    df = fields.Float(allow_none=True)
    p_value = fields.Float(allow_none=True)
    p_value_adjusted = fields.Float(allow_none=True, metadata={"description": "Holm, across the success metrics"})
    p_value_sequential = fields.Float(allow_none=True, metadata={"description": "always valid (mixture SPRT)"})
    p_value_sequential_adjusted = fields.Float(allow_none=True)
    ci_sequential = _interval()
    probability_b_beats_a = fields.Float(allow_none=True)
    guardrail = fields.Nested(NonInferioritySchema, allow_none=True)
    reasons = fields.Dict(keys=fields.String(), values=fields.String())


class SampleRatioSchema(Schema):
    chi2 = fields.Float(allow_none=True)
    df = fields.Integer()
    p_value = fields.Float(allow_none=True)
    flagged = fields.Boolean(metadata={"description": "p < 0.001: the split is not the one intended"})
    reason = fields.String(allow_none=True)
