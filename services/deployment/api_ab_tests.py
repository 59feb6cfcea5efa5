"""HTTP views of A/B tests: their definitions, and the statistics on numbers a user already has."""

from __future__ import annotations

import uuid

from flask import url_for

from services.deployment import ab_calculator, ab_tests
from services.deployment.ab_test_schemas import (
    ABTestCreateSchema, ABTestListArgs, ABTestSchema, AnalysisRequestSchema, SampleRatioRequestSchema,
    SampleSizeRequestSchema, SampleSizeSchema,
)
from services.deployment.service import QUEUE
from shared.ab_schemas import ComparisonSchema, SampleRatioSchema
from shared.auth import current_actor, requires
from shared.idempotency import idempotent
from shared.pagination import page_schema
from shared.registry_client import RegistryClient
from shared.web import Blueprint, MethodView, db_session, request_id, runtime

blp = Blueprint("ab_tests", __name__, url_prefix="/api/v1/ab-tests",
                description="A/B tests between models, and their statistics on any numbers")


def _registry() -> RegistryClient:
    return RegistryClient.for_request(runtime().settings.registry_url)


@blp.route("")
class ABTests(MethodView):
    @requires("viewer")
    @blp.arguments(ABTestListArgs, location="query")
    @blp.response(200, page_schema(ABTestSchema))
    def get(self, args):
        """The A/B tests, newest first; `?status=` filters."""
        return ab_tests.list_tests(db_session(), **args)

    @requires("ml_engineer")
    @idempotent
    @blp.arguments(ABTestCreateSchema)
    @blp.response(201, ABTestSchema)
    def post(self, body):
        """Define a test, in draft: both arms' versions are fixed now (A: the version live on model A's endpoint
        in `environment`, else its champion's, else its latest; B: its champion's, else its latest)."""
        test = ab_tests.create_test(session=db_session(), actor=current_actor(), request_id=request_id(),
                                    registry=_registry(), body=body)
        return test, 201, {"Location": url_for("ab_tests.ABTestItem", test_id=test.id)}


@blp.route("/<uuid:test_id>")
class ABTestItem(MethodView):
    @requires("viewer")
    @blp.response(200, ABTestSchema)
    def get(self, test_id: uuid.UUID):
        """A test's definition, state and verdict."""
        return ab_tests.get_test(db_session(), test_id)


@blp.route("/<uuid:test_id>/start")
class ABTestStart(MethodView):
    @requires("ml_engineer")
    @blp.response(200, ABTestSchema)
    def post(self, test_id: uuid.UUID):
        """Start a draft on model A's endpoint, where version_a must be live: B's version is deployed there
        (health checked as A was), then takes `traffic_split` of the units, each unit always meeting one arm."""
        rt = runtime()
        return ab_tests.start_test(session=db_session(), actor=current_actor(), request_id=request_id(),
                                   registry=_registry(), check_artifact=rt.artifacts.verify,
                                   queue=rt.settings.task_queue(QUEUE), test_id=test_id)


@blp.route("/<uuid:test_id>/stop")
class ABTestStop(MethodView):
    @requires("ml_engineer")
    @blp.response(200, ABTestSchema)
    def post(self, test_id: uuid.UUID):
        """End a running test without a verdict: all traffic returns to A at once."""
        return ab_tests.stop_test(session=db_session(), actor=current_actor(), request_id=request_id(),
                                  test_id=test_id)


@blp.route("/analysis")
class Analysis(MethodView):
    @requires("viewer")
    @blp.arguments(AnalysisRequestSchema)
    @blp.response(200, ComparisonSchema)
    def post(self, body):
        """One metric, B against A, from each arm's counts, sums, mean and sd, or raw values: the same figures
        a running test's results give (the sequential p-value as at a first look)."""
        return ab_calculator.analyse(body)


@blp.route("/srm")
class SampleRatio(MethodView):
    @requires("viewer")
    @blp.arguments(SampleRatioRequestSchema)
    @blp.response(200, SampleRatioSchema)
    def post(self, body):
        """Sample ratio mismatch: the chi-square goodness of fit of the arms' unit counts to the intended
        weights (equal by default); `flagged` below p = 0.001."""
        return ab_calculator.sample_ratio(body)


@blp.route("/sample-size")
class SampleSize(MethodView):
    @requires("viewer")
    @blp.arguments(SampleSizeRequestSchema)
    @blp.response(200, SampleSizeSchema)
    def post(self, body):
        """Units per arm to detect a minimum effect with the power asked, as statsmodels' NormalIndPower
        computes it (Cohen's h for a rate, d for a mean)."""
        return ab_calculator.sample_size(body)
