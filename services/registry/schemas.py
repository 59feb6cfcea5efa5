"""The registry's request and response schemas: the HTTP contract and the OpenAPI document."""

from __future__ import annotations


from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, pre_load, validate
from werkzeug.datastructures import FileStorage

from services.registry.artifact_checks import FORMATS
from services.registry.tables import MAX_VERSION_NUMBER
from services.registry.status import STATUSES, VERSION_STATUSES
from shared import strict_json
from shared.pagination import ListArgs
from shared.schemas import CreatedByCaller, Name, StrictSchema, UtcDateTime

MODEL_TYPES = ("classification", "regression", "clustering", "anomaly_detection", "forecasting", "ranking")
FRAMEWORKS = ("scikit_learn", "xgboost", "lightgbm", "pytorch", "tensorflow", "onnx", "custom")
SHA256 = validate.Regexp(r"^[0-9a-f]{64}$", error="Must be a lowercase hex sha256 digest.")


def _tags(**kwargs) -> fields.Dict:
    return fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=255)),
                       values=fields.String(validate=validate.Length(max=5000)), **kwargs)


class JSONText(fields.Nested):
    """A form field carrying a JSON object (multipart cannot nest), validated by a nested schema."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = strict_json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValidationError(f"Not valid JSON: {exc}.") from None
        return super()._deserialize(value, attr, data, **kwargs)


class FilePart(Upload):
    """A multipart part sent as a file. The same name sent as a plain form field is a string (the
    multipart location merges fields and files), which a view would otherwise read as a file."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, FileStorage):
            raise ValidationError("Must be a file part (a form part with a filename), not a plain form field.")
        return value


# ---- models -------------------------------------------------------------------------------------

SENSITIVE_DESCRIPTION = ("some of `features` whose values monitoring never stores in clear: a categorical value as "
                         "its keyed hash (HMAC-SHA256), a numeric one as its bin of the version's training profile")


class _ModelFields(CreatedByCaller):
    description = fields.String(validate=validate.Length(max=10_000))
    hyperparameters = fields.Dict(keys=fields.String(), metadata={
        "description": "the starting parameters of the model's trainings (a random_forest's by default)"})
    features = fields.List(fields.String(validate=validate.Length(min=1, max=255)))
    sensitive_features = fields.List(fields.String(validate=validate.Length(min=1, max=255)), metadata={
        "description": SENSITIVE_DESCRIPTION})
    target_variable = fields.String(allow_none=True, validate=validate.Length(max=255))
    tags = _tags()
    metadata = fields.Dict(keys=fields.String())


class ModelCreateSchema(_ModelFields):
    name = Name(required=True, validate=validate.Length(min=1, max=255))
    type = fields.String(required=True, validate=validate.OneOf(MODEL_TYPES))
    framework = fields.String(required=True, validate=validate.OneOf(FRAMEWORKS))


class ModelPatchSchema(_ModelFields):
    status = fields.String(validate=validate.OneOf(STATUSES))


class ModelSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    description = fields.String()
    type = fields.String()
    framework = fields.String()
    status = fields.String()
    hyperparameters = fields.Dict()
    features = fields.List(fields.String())
    sensitive_features = fields.List(fields.String(), metadata={"description": SENSITIVE_DESCRIPTION})
    target_variable = fields.String(allow_none=True)
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    metadata = fields.Dict(attribute="extra_metadata")
    latest_version = fields.Integer(allow_none=True)
    aliases = fields.Function(lambda model: {row.alias: row.version for row in model.alias_rows},
                              metadata={"description": "alias -> version number"})
    created_by = fields.String()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class ModelListArgs(ListArgs):
    q = fields.String(validate=validate.Length(min=1, max=255))
    type = fields.String(validate=validate.OneOf(MODEL_TYPES))
    framework = fields.String(validate=validate.OneOf(FRAMEWORKS))
    status = fields.String(validate=validate.OneOf(STATUSES))
    tag = fields.List(fields.String(validate=validate.Regexp(r"^[^:]+:.*$", error="Use key:value.")))


# ---- versions -----------------------------------------------------------------------------------

class VersionMetadataSchema(StrictSchema):
    description = fields.String(validate=validate.Length(max=10_000))
    parameters = fields.Dict(keys=fields.String())
    metrics = fields.Dict(keys=fields.String(), values=fields.Float(allow_nan=False))
    tags = _tags()
    dataset_id = fields.UUID(allow_none=True)
    parent_version = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_VERSION_NUMBER))
    training_job_id = fields.UUID(allow_none=True)
    code_version = fields.String(allow_none=True, validate=validate.Length(max=255))
    flavor = fields.String(allow_none=True, validate=validate.Length(min=1, max=64))
    format = fields.String(allow_none=True, validate=validate.OneOf(FORMATS), metadata={
        "description": "what the artifact is; skops has it checked (its types must all be trusted)"})


class VersionFromArtifactSchema(VersionMetadataSchema):
    """JSON body: register a version from an artifact already in the store."""

    artifact_id = fields.String(required=True, validate=SHA256)


class VersionUploadSchema(StrictSchema):
    """Multipart body: the `artifact` file part plus a `metadata` part holding a JSON object."""

    artifact = FilePart(required=True)
    metadata = JSONText(VersionMetadataSchema, load_default=dict)


# What a version's lineage rests on: fixed once it is registered (a change is a new version).
LINEAGE_FIELDS = ("artifact", "artifact_id", "artifact_sha256", "size", "artifact_filename", "provenance", "flavor",
                  "format", "loadable",
                  "parameters", "metrics", "dataset_id", "dataset_sha256", "parent_version", "training_job_id",
                  "code_version", "profile", "reference_sha256", "reference_rows", "feature_importances")


class VersionPatchSchema(StrictSchema):
    description = fields.String(validate=validate.Length(max=10_000))
    tags = _tags()
    status = fields.String(validate=validate.OneOf(VERSION_STATUSES),
                           metadata={"description": "archived: kept for lineage, but no alias may point at it"})

    @pre_load
    def _lineage_is_fixed(self, data, **kwargs):
        # Named apart from other unknown fields, so the 422 says why and what to do instead.
        fixed = sorted(set(data).intersection(LINEAGE_FIELDS)) if isinstance(data, dict) else []
        if fixed:
            raise ValidationError({field: ["Part of the version's lineage, fixed once registered; "
                                           "register a new version instead."] for field in fixed})
        return data


class VersionSchema(Schema):
    id = fields.UUID()
    model_id = fields.UUID()
    number = fields.Integer()
    status = fields.String(metadata={"description": "ready, or archived (no alias may point at it)"})
    artifact_sha256 = fields.String()
    size = fields.Integer()
    artifact_filename = fields.String(allow_none=True)
    provenance = fields.String()
    flavor = fields.String(allow_none=True)
    format = fields.String(allow_none=True, metadata={
        "description": "skops, onnx, pickle, joblib or opaque, as found at upload; null: registered before "
                       "uploads were checked"})
    loadable = fields.Boolean(allow_none=True, metadata={
        "description": "whether the platform loads it: a skops file whose types are all trusted"})
    description = fields.String()
    parameters = fields.Dict()
    metrics = fields.Dict(keys=fields.String(), values=fields.Float())
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    dataset_id = fields.UUID(allow_none=True)
    dataset_sha256 = fields.String(allow_none=True)
    parent_version = fields.Integer(allow_none=True)
    training_job_id = fields.UUID(allow_none=True)
    code_version = fields.String(allow_none=True)
    profile = fields.Dict(allow_none=True, metadata={"description": "the training data's profile (trained versions)"})
    reference_sha256 = fields.String(allow_none=True, metadata={
        "description": "the training features' reference sample for drift, a CSV artifact (trained versions)"})
    reference_rows = fields.Integer(allow_none=True, metadata={"description": "its rows: up to 10,000"})
    feature_importances = fields.Dict(keys=fields.String(), values=fields.Float(), allow_none=True, metadata={
        "description": "per feature, its share of the permutation importance on the test split (trained versions)"})
    aliases = fields.Function(lambda version: [row.alias for row in version.alias_rows])
    created_by = fields.String()
    created_at = UtcDateTime()


class AliasBodySchema(StrictSchema):
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_VERSION_NUMBER))


# ---- datasets -----------------------------------------------------------------------------------

class DatasetUploadSchema(StrictSchema):
    """Multipart body: the CSV `file`, and optionally a `name` (default: the file's) and `description`."""

    file = FilePart(required=True)
    name = Name(validate=validate.Length(min=1, max=255))
    description = fields.String(validate=validate.Length(max=10_000))


class ColumnSchema(Schema):
    name = fields.String()
    dtype = fields.String()
    nulls = fields.Integer()
    non_null = fields.Integer()
    infinite = fields.Integer(metadata={"description": "values that are +/-infinity, left out of min and max"})
    min = fields.Raw(allow_none=True)
    max = fields.Raw(allow_none=True)
    value_counts = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True,
                               metadata={"description": "count per value, for columns with at most 100 distinct values"})


class DatasetSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    description = fields.String()
    sha256 = fields.String()
    size = fields.Integer()
    rows = fields.Integer()
    columns = fields.Integer()
    schema = fields.List(fields.Nested(ColumnSchema))
    created_by = fields.String()
    created_at = UtcDateTime()


class DatasetListArgs(ListArgs):
    name = Name(validate=validate.Length(min=1, max=255))
    sha256 = fields.String(validate=SHA256)


# ---- lineage ------------------------------------------------------------------------------------

class LineageArgs(StrictSchema):
    direction = fields.String(load_default="both", validate=validate.OneOf(("up", "down", "both")))
    depth = fields.Integer(load_default=3, validate=validate.Range(min=1, max=10))


class LineageNodeSchema(Schema):
    id = fields.String()
    type = fields.String()
    label = fields.String()
    attributes = fields.Dict()


class LineageEdgeSchema(Schema):
    source = fields.String()
    target = fields.String()
    relation = fields.String()


class LineageSchema(Schema):
    root = fields.String()
    nodes = fields.List(fields.Nested(LineageNodeSchema))
    edges = fields.List(fields.Nested(LineageEdgeSchema))
