"""The A/B tests' request and response schemas: their definitions, and the statistics on numbers a user already
has (as GrowthBook's and Evan Miller's calculators take them), whose answers share shared/ab_schemas.py's shapes
with a running test's results."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.deployment.tables import AB_STATUSES, AB_TYPES, ENVIRONMENTS
from shared.pagination import ListArgs
from shared.schemas import CreatedByCaller, Name, StrictSchema, UtcDateTime

# Raw values per arm: a sample a browser can send and a request can test in milliseconds.
MAX_VALUES = 100_000
MAX_ARMS = 20
MAX_COUNT = 2.0 ** 53
KINDS = ("proportion", "mean")
MAX_METRICS = 10
MAX_DURATION_DAYS = 365


def _level(default: float, *, high: float) -> fields.Float:
    return fields.Float(load_default=default, allow_nan=False,
                        validate=validate.Range(min=0, max=high, min_inclusive=False, max_inclusive=False))


def _count() -> fields.Float:
    # Aggregated counts may be large (10^7 units and more) but are whole numbers: a float keeps 2^53 exact,
    # and sums of counts below it stay finite.
    return fields.Float(allow_nan=False, validate=validate.Range(min=0, max=MAX_COUNT))


def _mixing_variance() -> fields.Float:
    # tau^2 of the sequential test, in the squared units of the difference (shared/ab_statistics.py says how
    # to choose it): 1e-4 suits a rate, where a difference of one percentage point is worth detecting.
    return fields.Float(load_default=1e-4, allow_nan=False, validate=validate.Range(min=0, min_inclusive=False, max=1e12))


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
    mixing_variance = _mixing_variance()
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


class SampleRatioRequestSchema(StrictSchema):
    counts = fields.List(_count(), required=True, validate=validate.Length(min=2, max=MAX_ARMS))
    # The intended shares, any scale; by default equal.
    weights = fields.List(fields.Float(allow_nan=False, validate=validate.Range(min=0, min_inclusive=False)),
                          load_default=None, validate=validate.Length(min=2, max=MAX_ARMS))

    @validates_schema
    def _paired(self, data, **kwargs):
        if data.get("weights") is not None and len(data["weights"]) != len(data.get("counts", ())):
            raise ValidationError("One weight per count.", field_name="weights")


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


# ---- A/B tests ------------------------------------------------------------------------------------

class GuardrailEntrySchema(StrictSchema):
    """A guardrail with more than its name: an absolute `margin` (the metric's units) or a `relative_margin`
    (a share of A's estimate) by which B may be worse, and which direction is worse."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    margin = fields.Float(allow_nan=False, validate=validate.Range(min=0))
    relative_margin = fields.Float(allow_nan=False, validate=validate.Range(min=0, max=10))
    lower_is_better = fields.Boolean()

    @validates_schema
    def _one_margin(self, data, **kwargs):
        if "margin" in data and "relative_margin" in data:
            raise ValidationError("Give margin or relative_margin, not both.", field_name="margin")


class GuardrailEntry(fields.Field):
    """A metric's name, or a GuardrailEntrySchema object."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict):
            return GuardrailEntrySchema().load(value)
        raise ValidationError("A metric's name, or {name, margin | relative_margin, lower_is_better}.")


class TestConfigSchema(StrictSchema):
    duration = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_DURATION_DAYS),
                              metadata={"description": "the planned days"})
    sample_size = fields.Integer(strict=True, validate=validate.Range(min=1, max=2**53),
                                 metadata={"description": "the planned units, both arms"})


def _metrics(entry: fields.Field, **kwargs) -> fields.List:
    return fields.List(entry, validate=validate.Length(max=MAX_METRICS), **kwargs)


class ABTestCreateSchema(CreatedByCaller):
    name = Name(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(load_default="", validate=validate.Length(max=10_000))
    type = fields.String(load_default="traffic_split", validate=validate.OneOf(AB_TYPES))
    model_a_id = fields.String(required=True, validate=validate.Length(min=1, max=255),
                               metadata={"description": "model A's id or name: the test runs on its endpoint"})
    model_b_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                               metadata={"description": "model B's id or name; by default model A (two versions)"})
    version_a = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1),
                               metadata={"description": "by default the version live on the endpoint, else the "
                                                        "champion's, else the latest"})
    version_b = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1),
                               metadata={"description": "by default the champion's, else the latest"})
    environment = fields.String(load_default="production", validate=validate.OneOf(ENVIRONMENTS))
    # Units are placed in 10,000 slots: a share below one of them would send B nothing.
    traffic_split = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(min=0.0001, max=0.9999),
                                 metadata={"description": "B's share of the units, 0.0001 to 0.9999; default 0.5. A "
                                                          "shadow test copies every unit to B and ignores it"})
    success_metrics = _metrics(fields.String(validate=validate.Length(min=1, max=64)), required=True)
    guardrail_metrics = _metrics(GuardrailEntry(), load_default=list)
    min_sample_size = fields.Integer(load_default=1000, strict=True, validate=validate.Range(min=1, max=2**53),
                                     metadata={"description": "units per arm before the test may conclude"})
    max_duration_days = fields.Integer(load_default=30, strict=True,
                                       validate=validate.Range(min=1, max=MAX_DURATION_DAYS))
    significance_level = _level(0.05, high=0.5)
    mixing_variance = _mixing_variance()
    minimum_detectable_effect = fields.Float(
        load_default=0.05, allow_nan=False, validate=validate.Range(min=0, max=10, min_inclusive=False),
        metadata={"description": "the smallest relative change worth detecting: min_sample_size is checked "
                                 "against the units it needs"})
    test_config = fields.Nested(TestConfigSchema, load_default=dict)
    auto_promote = fields.Boolean(load_default=False, metadata={
        "description": "deploy the winner to the endpoint when the test concludes"})

    @validates_schema
    def _metrics_given(self, data, **kwargs):
        if not data.get("success_metrics"):
            raise ValidationError("Name at least one success metric.", field_name="success_metrics")


class GuardrailDefinitionSchema(Schema):
    name = fields.String()
    margin = fields.Float()
    relative = fields.Boolean(metadata={"description": "margin is a share of A's estimate"})
    lower_is_better = fields.Boolean()


class ABTestSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    description = fields.String()
    type = fields.String()
    status = fields.String(metadata={"description": ", ".join(AB_STATUSES)})
    model_a_id = fields.UUID()
    version_a = fields.Integer()
    model_b_id = fields.UUID()
    version_b = fields.Integer()
    model_type = fields.String()
    environment = fields.String()
    traffic_split = fields.Float(metadata={"description": "B's share of the units; 1 for a shadow test: B gets a copy "
                                                          "of every request"})
    success_metrics = fields.List(fields.String())
    guardrail_metrics = fields.List(fields.Nested(GuardrailDefinitionSchema))
    min_sample_size = fields.Integer()
    max_duration_days = fields.Integer()
    significance_level = fields.Float()
    mixing_variance = fields.Float()
    minimum_detectable_effect = fields.Float()
    test_config = fields.Nested(TestConfigSchema)
    auto_promote = fields.Boolean()
    verdict = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)
    warnings = fields.List(fields.String())
    created_by = fields.String()
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    ended_at = UtcDateTime(allow_none=True)
    endpoint_id = fields.UUID(allow_none=True, metadata={"description": "where it runs: model A's endpoint"})
    deployment_a_id = fields.UUID(allow_none=True, metadata={"description": "A's live deployment"})
    deployment_b_id = fields.UUID(allow_none=True, metadata={"description": "B's arm: a deployment of strategy ab_test"})


class ABTestListArgs(ListArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(AB_STATUSES))
