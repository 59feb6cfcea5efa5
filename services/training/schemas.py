"""Training's request and response schemas: the HTTP contract and the OpenAPI document."""

from __future__ import annotations


from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from services.training.tables import JOB_STATUSES, TRIAL_STATES
from shared.pagination import ListArgs
from shared.schemas import StrictSchema, UtcDateTime

STRATEGIES = ("grid", "random", "bayesian", "genetic", "tpe")
MAX_TRIALS = 1000
MAX_FOLDS = 20
DEFAULT_ESTIMATOR = "random_forest"  # trains both model types; the brief's hyperparameters are a forest's
DEFAULT_MAX_TRIALS = 20


def _split(default: float) -> fields.Float:
    return fields.Float(load_default=default, allow_nan=False,
                        validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False))


class ImputationSchema(StrictSchema):
    numeric = fields.String(load_default="median",
                            validate=validate.OneOf(("mean", "median", "most_frequent", "constant")))
    categorical = fields.String(load_default="most_frequent", validate=validate.OneOf(("most_frequent", "constant")))


class ShorthandNested(fields.Nested):
    """A nested object that may also be given as a plain string, meaning {`shorthand`: string}.

    The brief writes `"feature_selection": "mutual_info"` for `{"method": "mutual_info"}`.
    """

    def __init__(self, nested, *, shorthand: str, **kwargs):
        super().__init__(nested, **kwargs)
        self.shorthand = shorthand

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = {self.shorthand: value}
        return super()._deserialize(value, attr, data, **kwargs)


class FeatureSelectionSchema(StrictSchema):
    method = fields.String(load_default="none", validate=validate.OneOf(("mutual_info", "f_test", "variance", "none")))
    k = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1))


class PreprocessingSchema(StrictSchema):
    scaling = fields.String(load_default="standard", validate=validate.OneOf(("standard", "minmax", "robust", "none")))
    encoding = fields.String(load_default="onehot", validate=validate.OneOf(("onehot", "ordinal", "label")),
                             metadata={"description": "label is another name for ordinal (the brief's); "
                                                      "the target is label-encoded whatever this says"})
    imputation = fields.Nested(ImputationSchema, load_default=lambda: ImputationSchema().load({}))
    feature_selection = ShorthandNested(
        FeatureSelectionSchema, shorthand="method", load_default=lambda: FeatureSelectionSchema().load({}),
        metadata={"description": 'an object, or a method name alone: "mutual_info" is {"method": "mutual_info"}'})

    @post_load
    def _label_is_ordinal(self, data, **_):
        # One name per encoding from here on: the spec, the job and the pipeline say "ordinal".
        if data["encoding"] == "label":
            data["encoding"] = "ordinal"
        return data


class AugmentationSchema(StrictSchema):
    enabled = fields.Boolean(load_default=False)
    methods = fields.List(fields.String(validate=validate.OneOf(("smote", "random_oversampling"))),
                          load_default=lambda: ["smote"], validate=validate.Length(min=1))


class OptimizationSchema(StrictSchema):
    strategy = fields.String(load_default="tpe", validate=validate.OneOf(STRATEGIES))
    # No load_default: the request's top-level max_trials may give it instead; the default is applied there.
    max_trials = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_TRIALS),
                                metadata={"description": f"default {DEFAULT_MAX_TRIALS}"})
    metric = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))
    direction = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("maximize", "minimize")))
    search_space = fields.Dict(keys=fields.String(), load_default=None, allow_none=True)
    parallelism = fields.Integer(load_default=None, allow_none=True, strict=True,
                                 validate=validate.Range(min=1, max=64))


class TrainingRequestSchema(StrictSchema):
    """POST /api/v1/models/<id>/trainings: what to train on, how to preprocess, how to search."""

    dataset_id = fields.UUID(load_default=None, allow_none=True)
    training_data_path = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=4096))
    target = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=255),
                           metadata={"description": "defaults to the model's target_variable"})
    features = fields.List(fields.String(validate=validate.Length(min=1, max=255)), load_default=None,
                           allow_none=True, metadata={"description": "defaults to the model's features, else every "
                                                                     "column but the target"})
    estimator = fields.String(load_default=DEFAULT_ESTIMATOR, validate=validate.Length(min=1, max=64),
                              metadata={"description": "its starting parameters are the model's hyperparameters"})
    validation_split = _split(0.1)
    test_split = _split(0.2)
    cross_validation_folds = fields.Integer(load_default=5, strict=True, validate=validate.Range(min=2, max=MAX_FOLDS))
    enable_hyperparameter_optimization = fields.Boolean(load_default=True)
    optimization = fields.Nested(OptimizationSchema, load_default=lambda: OptimizationSchema().load({}))
    max_trials = fields.Integer(load_default=None, allow_none=True, strict=True,
                                validate=validate.Range(min=1, max=MAX_TRIALS),
                                metadata={"description": "the same as optimization.max_trials (the brief's place)"})
    enable_early_stopping = fields.Boolean(load_default=False)
    random_state = fields.Integer(load_default=42, strict=True, validate=validate.Range(min=0, max=2**32 - 1))
    description = fields.String(load_default="", validate=validate.Length(max=10_000))
    preprocessing = fields.Nested(PreprocessingSchema, load_default=lambda: PreprocessingSchema().load({}))
    augmentation = fields.Nested(AugmentationSchema, load_default=lambda: AugmentationSchema().load({}))

    @validates_schema
    def _one_source_and_splits(self, data, **_):
        if (data.get("dataset_id") is None) == (data.get("training_data_path") is None):
            raise ValidationError("Give exactly one of dataset_id and training_data_path.", "dataset_id")
        if data["validation_split"] + data["test_split"] >= 0.9:
            raise ValidationError("validation_split + test_split must be below 0.9.", "test_split")
        top, nested = data.get("max_trials"), data["optimization"].get("max_trials")
        if top is not None and nested is not None and top != nested:
            raise ValidationError(f"max_trials ({top}) and optimization.max_trials ({nested}) are the same "
                                  "setting and disagree; give one of them.", "max_trials")

    @post_load
    def _one_place_for_max_trials(self, data, **_):
        top = data.pop("max_trials")
        optimization = data["optimization"]
        optimization["max_trials"] = optimization.get("max_trials") or top or DEFAULT_MAX_TRIALS
        return data


class TrainingAcceptedSchema(Schema):
    id = fields.UUID()
    status = fields.String()
    url = fields.String()


class ProgressSchema(Schema):
    trials_done = fields.Integer()
    trials_total = fields.Integer()
    best_value = fields.Float(allow_none=True)
    best_params = fields.Dict(allow_none=True)


class TrainingJobSchema(Schema):
    id = fields.UUID()
    model_id = fields.UUID()
    status = fields.String(metadata={"enum": list(JOB_STATUSES)})
    phase = fields.String(allow_none=True)
    description = fields.String()
    estimator = fields.Function(lambda job: job.spec.get("estimator"))
    strategy = fields.Function(lambda job: job.spec.get("strategy"))
    metric = fields.Function(lambda job: job.spec.get("metric"))
    direction = fields.Function(lambda job: job.spec.get("direction"))
    spec = fields.Dict()
    dataset_id = fields.UUID(allow_none=True)
    dataset_sha256 = fields.String()
    training_data_path = fields.String(allow_none=True)
    parent_version = fields.Integer(allow_none=True)
    progress = fields.Function(lambda job: ProgressSchema().dump(job))
    best_params = fields.Dict(allow_none=True)
    best_value = fields.Float(allow_none=True)
    best_trial = fields.Integer(allow_none=True)
    cv_scores = fields.Dict(allow_none=True)
    test_metrics = fields.Dict(allow_none=True)
    artifact_sha256 = fields.String(allow_none=True)
    version_number = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    requested_by = fields.String()
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)


class TrialSchema(Schema):
    number = fields.Integer()
    state = fields.String(metadata={"enum": list(TRIAL_STATES)})
    params = fields.Dict()
    fold_scores = fields.List(fields.Float())
    mean = fields.Float(allow_none=True)
    std = fields.Float(allow_none=True)
    duration_s = fields.Float(allow_none=True)
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    error = fields.String(allow_none=True)


class TrainingListArgs(ListArgs):
    status = fields.String(validate=validate.OneOf(JOB_STATUSES))


class TrialListArgs(ListArgs):
    state = fields.String(validate=validate.OneOf(TRIAL_STATES))
