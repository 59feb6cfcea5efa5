"""HTTP views of A/B tests: the statistics on numbers a user already has."""

from __future__ import annotations

from services.deployment import ab_calculator
from services.deployment.ab_test_schemas import (
    AnalysisRequestSchema, ComparisonSchema, SampleRatioRequestSchema, SampleRatioSchema, SampleSizeRequestSchema,
    SampleSizeSchema,
)
from shared.auth import requires
from shared.web import Blueprint, MethodView

blp = Blueprint("ab_tests", __name__, url_prefix="/api/v1/ab-tests",
                description="A/B tests between models, and their statistics on any numbers")


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
