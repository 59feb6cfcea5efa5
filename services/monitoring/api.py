"""HTTP views of monitoring: prediction records, actuals and metrics sent by clients (serving's own
records arrive by the ingest queue), what monitoring makes of them, and the A/B tests' results."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

from flask import current_app
from flask_smorest import Api
from marshmallow import RAISE

from services.monitoring import drift, model_anomalies, performance, records
from services.monitoring.drift_reports import drift_report
from services.monitoring.schemas import (
    ABTestResultsSchema, ActualsAcceptedSchema, AnomaliesArgs, AnomaliesSchema, ActualsBodySchema, DriftArgs,
    DriftReportRequestSchema,
    DriftReportSchema, MetricsAcceptedSchema, MetricsBodySchema, PerformanceArgs, PerformanceSchema,
    PredictionsAcceptedSchema, PredictionsBodySchema,
)
from shared.auth import requires
from shared.db import utcnow
from shared.errors import PayloadTooLarge, ValidationFailed
from shared.registry_client import RegistryClient, forwarded_headers
from shared.service_client import ServiceUnavailable, fetcher
from shared.web import Blueprint, MethodView, Runtime, db_session, runtime

blp = Blueprint("monitoring", __name__, url_prefix="/api/v1/monitoring",
                description="Prediction records, actuals and metrics")
drift_reports = Blueprint("drift_reports", __name__, url_prefix="/api/v1/drift-reports",
                          description="Drift between any two datasets")
model_monitoring = Blueprint("monitoring_models", __name__, url_prefix="/api/v1/models",
                             description="How a model is doing")
# The deployment service owns the tests (the rest of /api/v1/ab-tests); their analysis is monitoring's.
ab_test_results = Blueprint("ab_test_results", __name__, url_prefix="/api/v1/ab-tests",
                            description="A running A/B test's results")


def _live_versions(model_id: str) -> dict[str, int]:
    """The control plane's live version of the model per environment, asked as the caller."""
    fetch = fetcher(runtime().settings.deployment_url, current_app._get_current_object())
    path = f"/api/v1/models/{urllib.parse.quote(model_id, safe='')}/deployments?status=live&limit=10"
    status, body = fetch(path, forwarded_headers())
    if status == 404:
        return {}
    if status != 200:
        raise ServiceUnavailable(f"The deployment service answered {status} for the model's live versions.")
    return {item["environment"]: item["version"] for item in body["items"]}


def _versions() -> records.Versions:
    return records.Versions(RegistryClient.for_request(runtime().settings.registry_url), _live_versions, db_session())


def _records(body: dict[str, Any], limit: int) -> tuple[list[Any], bool]:
    if "records" not in body:
        return [body], True
    if len(body) > 1:
        raise ValidationFailed("Send one record, or `records` alone.",
                               errors={name: ["Unknown field beside records."] for name in body if name != "records"})
    sent = body["records"]
    if not isinstance(sent, list) or not sent:
        raise ValidationFailed("records must be a non-empty list.", errors={"records": ["Must be a non-empty list."]})
    if len(sent) > limit:
        raise PayloadTooLarge(f"{len(sent)} records is more than the {limit} one request may hold; send them in "
                              "smaller batches.")
    return sent, False


@blp.route("/predictions")
class Predictions(MethodView):
    @requires("data_scientist")
    @blp.arguments(PredictionsBodySchema)
    @blp.response(202, PredictionsAcceptedSchema)
    def post(self, body):
        """Record predictions made outside the platform's endpoints (serving records its own): one
        record, or up to MODELYARD_MAX_INGEST_RECORDS in `records`."""
        rt = runtime()
        sent, one = _records(body, rt.settings.max_ingest_records)
        return records.record_predictions(session=db_session(), versions=_versions(), records=sent, one=one,
                                          now=utcnow(), hash_key=rt.settings.feature_hash_key)


@blp.route("/actuals")
class Actuals(MethodView):
    @requires("data_scientist")
    @blp.arguments(ActualsBodySchema)
    @blp.response(202, ActualsAcceptedSchema)
    def post(self, body):
        """Record the true outcomes of predictions by their request ids, however long after them."""
        rt = runtime()
        sent, one = _records(body, rt.settings.max_ingest_records)
        return records.record_actuals(session=db_session(), versions=_versions(), records=sent, one=one, now=utcnow())


@blp.route("/metrics")
class Metrics(MethodView):
    @requires("data_scientist")
    @blp.arguments(MetricsBodySchema)
    @blp.response(202, MetricsAcceptedSchema)
    def post(self, body):
        """Record metrics computed outside the platform (on a batch of predictions, a business outcome),
        with their context, optionally for an A/B test's arm."""
        rt = runtime()
        sent, one = _records(body, rt.settings.max_ingest_records)
        return records.record_metrics(session=db_session(), versions=_versions(), records=sent, one=one, now=utcnow())


@model_monitoring.route("/<model:model_ref>/performance")
class ModelPerformance(MethodView):
    @requires("viewer")
    @model_monitoring.arguments(PerformanceArgs, location="query", unknown=RAISE)
    @model_monitoring.response(200, PerformanceSchema)
    def get(self, args, model_ref: str):
        """The model's predictions over the last days scored against their actuals, with latency,
        throughput, error rate and recorded metrics: in sum, per version, and per hour or day."""
        return performance.model_performance(
            session=db_session(), registry=RegistryClient.for_request(runtime().settings.registry_url),
            model_ref=model_ref, now=utcnow(), **args)


@model_monitoring.route("/<model:model_ref>/drift")
class ModelDrift(MethodView):
    @requires("viewer")
    @model_monitoring.arguments(DriftArgs, location="query", unknown=RAISE)
    @model_monitoring.response(200, DriftReportSchema)
    @model_monitoring.alt_response(409, description="The version has no reference sample, or no recent predictions "
                                                    "with features.")
    def get(self, args, model_ref: str):
        """The drift of the model's live version: each feature of its recent predictions against the
        reference sample of its training data, by the test Evidently picks, and its predictions against
        the model's predictions of that sample. The latest stored report while it is fresh."""
        rt = runtime()
        hours = args.pop("hours") or rt.settings.drift_window_hours
        return drift.model_drift(session=db_session(), versions=_versions(), artifacts=rt.artifacts,
                                 model_ref=model_ref, hours=hours, fresh_seconds=rt.settings.drift_fresh_seconds,
                                 standard_hours=rt.settings.drift_window_hours, now=utcnow(),
                                 hash_key=rt.settings.feature_hash_key, **args)


@model_monitoring.route("/<model:model_ref>/anomalies")
class ModelAnomalies(MethodView):
    @requires("viewer")
    @model_monitoring.arguments(AnomaliesArgs, location="query", unknown=RAISE)
    @model_monitoring.response(200, AnomaliesSchema)
    def get(self, args, model_ref: str):
        """The model's operating metrics per whole hour or day, each judged against its rolling median and
        MAD (or the same hour of earlier days, the same weekday of earlier weeks, when the series is long
        enough): the anomalous buckets and the spans they make."""
        return model_anomalies.model_anomalies(
            session=db_session(), registry=RegistryClient.for_request(runtime().settings.registry_url),
            model_ref=model_ref, now=utcnow(), **args)


@drift_reports.route("")
class DriftReports(MethodView):
    @requires("viewer")
    @drift_reports.arguments(DriftReportRequestSchema)
    @drift_reports.response(200, DriftReportSchema)
    @drift_reports.alt_response(409, description="The sides have no column in common, the model version has no "
                                                 "reference sample, or no prediction with features in the window.")
    def post(self, body):
        """The drift report of any two sides, over the columns both have: each a dataset the registry holds,
        a model version's reference sample (reference), or its predictions in a window (current). The same
        tests as a model's report, as Evidently's report compares two frames."""
        rt = runtime()
        correction = (body["options"] or {}).get("correction") or body["correction"] or "none"
        return drift_report(session=db_session(), versions=_versions(), artifacts=rt.artifacts,
                            reference=body["reference"], current=body["current"], correction=correction,
                            default_hours=rt.settings.drift_window_hours, now=utcnow())


@ab_test_results.route("/<uuid:test_id>/results")
class ABTestResults(MethodView):
    @requires("viewer")
    @ab_test_results.response(200, ABTestResultsSchema)
    def get(self, test_id: uuid.UUID):
        """The test's latest figures: units per arm and their sample ratio check, each metric of B against A
        (fixed-horizon and always-valid p-values and intervals, Holm across the success metrics, guardrails as
        non-inferiority) and the verdict once reached. Computed now when the latest look is older than beat's
        sweep period."""
        from services.monitoring import ab_analysis  # scipy, for this read only

        return ab_analysis.latest_results(session=db_session(), test_id=test_id, now=utcnow())


def register(api: Api, rt: Runtime) -> None:
    from services.monitoring.api_alerts import alerts_blp, rules_blp
    from services.monitoring.api_docs import docs
    from services.monitoring.dashboards import dashboards

    api.register_blueprint(rules_blp)
    api.register_blueprint(alerts_blp)
    api.register_blueprint(blp)
    api.register_blueprint(model_monitoring)
    api.register_blueprint(drift_reports)
    api.register_blueprint(ab_test_results)
    api.register_pages(docs)
    api.register_pages(dashboards)
