"""Identity's request and response schemas: the contract and the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.identity.users import MIN_PASSWORD_LENGTH
from shared.audit import OUTCOMES
from shared.auth import ROLES
from shared.pagination import ListArgs, page_schema
from shared.schemas import Name, StrictSchema, UtcDateTime

MAX_PASSWORD_LENGTH = 1024
role_field = {"validate": validate.OneOf(ROLES)}


class TokenRequestSchema(StrictSchema):
    username = Name(required=True, validate=validate.Length(min=1, max=255))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=MAX_PASSWORD_LENGTH))


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class UserSchema(Schema):
    id = fields.UUID(dump_only=True)
    username = fields.String()
    role = fields.String()
    is_active = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    last_login_at = UtcDateTime(allow_none=True)


class UserCreateSchema(StrictSchema):
    username = Name(required=True, validate=validate.Length(min=1, max=255))
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH))
    role = fields.String(required=True, **role_field)


class UserPatchSchema(StrictSchema):
    role = fields.String(**role_field)
    is_active = fields.Boolean()
    password = fields.String(load_only=True, validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH))

    @validates_schema
    def _something_to_change(self, data, **_):
        if not data:
            raise ValidationError("Send at least one of role, is_active, password.", "_schema")


class UserListArgs(ListArgs):
    role = fields.String(**role_field)
    is_active = fields.Boolean()


class ApiKeySchema(Schema):
    id = fields.UUID()
    name = fields.String()
    role = fields.String()
    prefix = fields.String()
    owner_id = fields.UUID()
    owner = fields.String(attribute="owner_name")
    created_at = UtcDateTime()
    expires_at = UtcDateTime(allow_none=True)
    revoked_at = UtcDateTime(allow_none=True)
    last_used_at = UtcDateTime(allow_none=True, metadata={
        "description": "When a request with the key last succeeded, to the minute; null if never."})


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "The key itself; shown only in this response."})


class ApiKeyCreateSchema(StrictSchema):
    name = Name(required=True, validate=validate.Length(min=1, max=255))
    role = fields.String(required=True, **role_field)
    expires_in_days = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=3650))


class AuditEntrySchema(Schema):
    seq = fields.Integer()
    at = UtcDateTime()
    actor_id = fields.String(allow_none=True)
    actor = fields.String()
    action = fields.String()
    resource_type = fields.String()
    resource_id = fields.String()
    request_id = fields.String()
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    outcome = fields.String(metadata={"description": "allowed: a change that was made; denied: a refused request"})
    # Null until the sealer links the row into the chain (about a second after it is written).
    prev_hash = fields.String(allow_none=True)
    hash = fields.String(allow_none=True)


class AuditListArgs(ListArgs):
    resource_type = fields.String(validate=validate.Length(max=64))
    resource_id = fields.String(validate=validate.Length(max=255))
    actor = fields.String(validate=validate.Length(max=255))
    action = fields.String(validate=validate.Length(max=64))
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))


class ChainReportSchema(Schema):
    ok = fields.Boolean()
    entries = fields.Integer()
    first_bad_seq = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)


UserPageSchema = page_schema(UserSchema)
ApiKeyPageSchema = page_schema(ApiKeySchema)
AuditPageSchema = page_schema(AuditEntrySchema)
