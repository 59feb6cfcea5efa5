"""The A/B tests' request and response schemas: the statistics on numbers a user already has (as GrowthBook's
and Evan Miller's calculators take them) and the results of a running test share one shape per metric."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from shared.schemas import StrictSchema

# Raw values per arm: a sample a browser can send and a request can test in milliseconds.
MAX_VALUES = 100_000
MAX_ARMS = 20
MAX_COUNT = 2.0 ** 53
KINDS = ("proportion", "mean")


def _level(default: float, *, high: float) -> fields.Float:
    return fields.Float(load_default=default, allow_nan=False,
                        validate=validate.Range(min=0, max=high, min_inclusive=False, max_inclusive=False))


def _count() -> fields.Float:
    # Aggregated counts may be large (10^7 units and more) but are whole numbers: a float keeps 2^53 exact,
    # and sums of counts below it stay finite.
    return fields.Float(allow_nan=False, validate=validate.Range(min=0, max=MAX_COUNT))


def _number() -> fields.Float:
    return fields.Float(allow_nan=False)


class ArmSchema(StrictSchema):
    """One arm in exactly one form: `{n, conversions}` (a rate), `{n, sum, sum_sq}`, `{n, mean, sd}` or
    `{values}` (a mean)."""

    n = _count()
    conversions = _count()
    sum = _number()
    sum_sq = fields.Float(allow_nan=False, validate=validate.Range(min=0))
    mean = _number()
    sd = fields.Float(allow_nan=False, validate=validate.Range(min=0))
    values = fields.List(_number(), validate=validate.Length(max=MAX_VALUES))

    FORMS = ({"n", "conversions"}, {"n", "sum", "sum_sq"}, {"n", "mean", "sd"}, {"values"})

    @validates_schema
    def _one_form(self, data, **kwargs):
        if set(data) not in self.FORMS:
            raise ValidationError("An arm is {n, conversions}, {n, sum, sum_sq}, {n, mean, sd} or {values}; "
                                  f"this one has {sorted(data) or 'nothing'}.")
        for name in ("n", "conversions"):
            if name in data and data[name] != int(data[name]):
                raise ValidationError("Must be a whole number.", field_name=name)


class ArmsSchema(StrictSchema):
    A = fields.Nested(ArmSchema, required=True)
    B = fields.Nested(ArmSchema, required=True)


class AnalysisRequestSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    arms = fields.Nested(ArmsSchema, required=True)
    alpha = _level(0.05, high=0.5)
    # tau^2 of the sequential test, in the squared units of the difference (shared/ab_statistics.py says how
    # to choose it): 1e-4 suits a rate, where a difference of one percentage point is worth detecting.
    mixing_variance = fields.Float(load_default=1e-4, allow_nan=False,
                                   validate=validate.Range(min=0, min_inclusive=False, max=1e12))
    # A guardrail's margin, in the metric's units: with it the answer holds the non-inferiority test.
    margin = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=0))
    lower_is_better = fields.Boolean(load_default=False)

    @validates_schema
    def _arms_of_kind(self, data, **kwargs):
        rate = {"n", "conversions"}
        for name, arm in data.get("arms", {}).items():
            if (set(arm) == rate) != (data.get("kind") == "proportion"):
                raise ValidationError({name: ["A proportion's arm is {n, conversions}; a mean's is {n, sum, sum_sq}, "
                                              "{n, mean, sd} or {values}."]}, field_name="arms")
            if set(arm) == rate and arm["conversions"] > arm["n"]:
                raise ValidationError({name: ["conversions must not exceed n."]}, field_name="arms")


class GuardrailSchema(StrictSchema):
    margin = fields.Float()
    lower_is_better = fields.Boolean()
    statistic = fields.Float(allow_none=True)
    p_value = fields.Float(allow_none=True)
    confidence_bound = fields.Float(allow_none=True)
    passed = fields.Boolean(allow_none=True, data_key="pass", attribute="pass")
    reason = fields.String(allow_none=True)


def _interval() -> fields.List:
    return fields.List(fields.Float(), allow_none=True, metadata={"description": "[low, high]"})


class ComparisonSchema(StrictSchema):
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
    guardrail = fields.Nested(GuardrailSchema, allow_none=True)
    reasons = fields.Dict(keys=fields.String(), values=fields.String())


class SampleRatioRequestSchema(StrictSchema):
    counts = fields.List(_count(), required=True, validate=validate.Length(min=2, max=MAX_ARMS))
    # The intended shares, any scale; by default equal.
    weights = fields.List(fields.Float(allow_nan=False, validate=validate.Range(min=0, min_inclusive=False)),
                          load_default=None, validate=validate.Length(min=2, max=MAX_ARMS))

    @validates_schema
    def _paired(self, data, **kwargs):
        if data.get("weights") is not None and len(data["weights"]) != len(data.get("counts", ())):
            raise ValidationError("One weight per count.", field_name="weights")


class SampleRatioSchema(StrictSchema):
    chi2 = fields.Float(allow_none=True)
    df = fields.Integer()
    p_value = fields.Float(allow_none=True)
    flagged = fields.Boolean(metadata={"description": "p < 0.001: the split is not the one intended"})
    reason = fields.String(allow_none=True)


class SampleSizeRequestSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    baseline_rate = fields.Float(load_default=None, allow_nan=False,
                                 validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False))
    mde_relative = fields.Float(load_default=None, allow_nan=False)
    sd = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(min=0, min_inclusive=False))
    delta = fields.Float(load_default=None, allow_nan=False)
    alpha = _level(0.05, high=0.5)
    power = _level(0.8, high=1)
    ratio = fields.Float(load_default=1.0, allow_nan=False, validate=validate.Range(min=0.001, max=1000),
                         metadata={"description": "n_b / n_a"})
    alternative = fields.String(load_default="two-sided", validate=validate.OneOf(("two-sided", "larger")))

    @validates_schema
    def _effect(self, data, **kwargs):
        needed = ("baseline_rate", "mde_relative") if data.get("kind") == "proportion" else ("sd", "delta")
        missing = {name: ["Required for this kind."] for name in needed if data.get(name) is None}
        if missing:
            raise ValidationError(missing)


class SampleSizeSchema(StrictSchema):
    n_a = fields.Integer()
    n_b = fields.Integer()
    total = fields.Integer()
