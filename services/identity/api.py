"""Identity's HTTP views: tokens, users, API keys and the audit log. Each parses, calls one use
case, and returns; the request's transaction is committed by the edge after the view returns."""

from __future__ import annotations

import uuid

from flask import request
from flask_smorest import Api
from marshmallow import RAISE

from services.identity import keys, audit_log, login, schemas, users
from shared.auth import current_actor, issue_token, requires
from shared.db import after_commit
from shared.errors import PROBLEM_JSON, ProblemSchema
from shared.idempotency import idempotent
from shared.web import Blueprint, MethodView, Runtime, carries_credentials, db_session, request_id, runtime

auth_blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Tokens and API keys")
users_blp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Users and roles")
audit_blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="The audit log")


@auth_blp.route("/token")
class Token(MethodView):
    @carries_credentials
    @auth_blp.doc(security=[])  # the one operation that needs no credentials: it hands them out
    @auth_blp.arguments(schemas.TokenRequestSchema)
    @auth_blp.response(200, schemas.TokenSchema)
    @auth_blp.alt_response(429, schema=ProblemSchema, content_type=PROBLEM_JSON,
                           description="Too many failed logins for this user name or client address.",
                           headers={"Retry-After": {"description": "Seconds until a login is admitted again.",
                                                    "schema": {"type": "integer"}}})
    def post(self, body):
        """Exchange a user name and password for a bearer token."""
        user = login.check_credentials(session=db_session(), throttle=runtime().throttle,
                                       address=request.remote_addr, **body)
        token = issue_token(user_id=str(user.id), username=user.username, role=user.role,
                            generation=user.token_generation)
        return {"access_token": token, "token_type": "bearer", "expires_in": runtime().settings.jwt_expires_seconds}


@auth_blp.route("/api-keys")
class ApiKeys(MethodView):
    @requires("viewer")
    @auth_blp.arguments(schemas.ListArgs, location="query", unknown=RAISE)
    @auth_blp.response(200, schemas.ApiKeyPageSchema)
    def get(self, args):
        """List the caller's API keys (an admin sees all); never the keys themselves."""
        return keys.list_api_keys(session=db_session(), actor=current_actor(), **args)

    @carries_credentials
    @requires("viewer")
    @idempotent
    @auth_blp.arguments(schemas.ApiKeyCreateSchema)
    @auth_blp.response(201, schemas.ApiKeyCreatedSchema)
    def post(self, body):
        """Create an API key with at most the caller's role; the key is shown only in this answer."""
        return keys.create_api_key(session=db_session(), actor=current_actor(), request_id=request_id(), **body)


@auth_blp.route("/api-keys/<uuid:key_id>")
class ApiKeyById(MethodView):
    @requires("viewer")
    @auth_blp.response(204)
    def delete(self, key_id: uuid.UUID):
        """Revoke an API key (the owner's or, for an admin, anyone's); refused from the next request."""
        keys.revoke_api_key(session=db_session(), actor=current_actor(), request_id=request_id(), key_id=key_id)
        _forget_verified_keys()


def _forget_verified_keys() -> None:
    """This process refuses keys revoked by the request from its commit on; the others within a second
    (shared.auth.VerifiedKeys)."""
    after_commit(db_session(), runtime().verified_keys.forget)


@users_blp.route("")
class Users(MethodView):
    @requires("admin")
    @users_blp.arguments(schemas.UserListArgs, location="query", unknown=RAISE)
    @users_blp.response(200, schemas.UserPageSchema)
    def get(self, args):
        """List users, filtered by role or activity."""
        return users.list_users(session=db_session(), **args)

    @requires("admin")
    @idempotent
    @users_blp.arguments(schemas.UserCreateSchema)
    @users_blp.response(201, schemas.UserSchema)
    def post(self, body):
        """Create a user with a role."""
        return users.create_user(session=db_session(), actor=current_actor(), request_id=request_id(), **body)


@users_blp.route("/me")
class Me(MethodView):
    @requires("viewer")
    @users_blp.response(200, schemas.UserSchema)
    def get(self):
        """The calling user."""
        return users.get_user(session=db_session(), user_id=current_actor().id)


@users_blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @requires("admin")
    @users_blp.response(200, schemas.UserSchema)
    def get(self, user_id: uuid.UUID):
        """One user."""
        return users.get_user(session=db_session(), user_id=user_id)

    @requires("admin")
    @users_blp.arguments(schemas.UserPatchSchema)
    @users_blp.response(200, schemas.UserSchema)
    def patch(self, body, user_id: uuid.UUID):
        """Change a user's role, activity or password."""
        user = users.update_user(session=db_session(), actor=current_actor(), request_id=request_id(),
                                 user_id=user_id, **body)
        _forget_verified_keys()  # deactivation and demotion revoke keys
        return user


@audit_blp.route("")
class AuditLog(MethodView):
    @requires("admin")
    @audit_blp.arguments(schemas.AuditListArgs, location="query", unknown=RAISE)
    @audit_blp.response(200, schemas.AuditPageSchema)
    def get(self, args):
        """Audit rows, newest first, filtered by resource, actor, action or outcome (denied: refused requests)."""
        return audit_log.list_audit_entries(session=db_session(), **args)


@audit_blp.route("/verify")
class AuditVerify(MethodView):
    @requires("admin")
    @audit_blp.response(200, schemas.ChainReportSchema)
    def get(self):
        """Recompute the audit hash chain and report the first row that was altered or removed."""
        return audit_log.verify_audit_chain(session=db_session())


def register(api: Api, _rt: Runtime) -> None:
    """Mount identity's routes (its manifest names this; the all-in-one app calls it too)."""
    for blueprint in (auth_blp, users_blp, audit_blp):
        api.register_blueprint(blueprint)
