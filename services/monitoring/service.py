"""Monitoring's manifest: it owns the predictions store, which the ingest pool fills from serving's batches
and clients fill through its API (that task's name and queue live in shared.prediction_records, which
serving also reads), the drift reports the drift pool computes, and the A/B tests' analyses the abtest pool
computes."""

from shared.prediction_records import QUEUE
from shared.service_spec import BeatEntry, Location, ServiceSpec, WebProcess

DRIFT_QUEUE = "drift"
SWEEP_DRIFT = "drift.sweep"
COMPUTE_DRIFT = "drift.compute"
SWEEP_ANOMALIES = "drift.sweep_anomalies"
DETECT_ANOMALIES = "drift.detect_anomalies"
EVALUATE_ALERTS = "alerts.evaluate"
KEEP_DAYS = "ingest.keep_days"
REFRESH_TALLIES = "ingest.refresh_tallies"
ABTEST_QUEUE = "abtest"
SWEEP_ABTESTS = "abtest.sweep"
ANALYSE_ABTEST = "abtest.analyse"
# How often beat has every running A/B test looked at; a look younger than this answers GET .../results.
ANALYSE_EVERY_SECONDS = 300.0

SERVICE = ServiceSpec(
    name="monitoring",
    summary="the predictions store: serving's records and those clients send",
    register="services.monitoring.api:register",
    port=8106,
    # Two workers of greenlets: a batch of records is CPU in Python (parsing, checking, COPY's rows), so one
    # worker held the batch API to one core of two (0.93 cores, machine 1.4; two: 1.13 and 1.8).
    web=WebProcess(workers=2),
    # A model's performance and drift belong here, the rest of /models to the registry; an A/B test's results too,
    # the rest of /ab-tests to the deployment service, which owns the tests (a regex location wins over a prefix).
    locations=(Location("^/api/v1/models/[^/]+/(performance|drift|anomalies)$", "regex"),
               Location("^/api/v1/ab-tests/[^/]+/results$", "regex"), Location("/api/v1/monitoring"),
               Location("/api/v1/drift-reports"), Location("/api/v1/alert-rules"), Location("/api/v1/alerts"),
               # The platform's browser pages: the API's documentation, the dashboards (dashboards.py).
               Location("/api/v1/docs"), Location("/monitoring/")),
    settings=("registry_url", "deployment_url", "identity_url", "dashboard_cookie_secure", "max_ingest_records",
              "drift_fresh_seconds", "drift_window_hours", "webhook_allow_private", "prediction_retention_days",
              "feature_hash_key"),
    tables=("services.monitoring.tables",),
    consumers=("services.monitoring.handlers:version_baselines",
               "services.monitoring.handlers:sensitive_feature_lists", "services.monitoring.handlers:alert_sources",
               "services.monitoring.handlers:ab_test_analyses"),
    task_modules=("workers.ingest", "workers.drift", "workers.alerts", "workers.abtest"),
    queues=(QUEUE, DRIFT_QUEUE, ABTEST_QUEUE),
    # The sweeps find the served versions whose drift report is stale, and the models whose last hour is
    # to be judged for anomalies, and send them a few per task to the drift pool (monitoring's analyses).
    # On "default": a sweep must not wait behind the work it sends.
    beat={"sweep-drift": BeatEntry(SWEEP_DRIFT, 60.0, queue="default"),
          "sweep-anomalies": BeatEntry(SWEEP_ANOMALIES, 900.0, queue="default"),
          # Every alert rule against every model it watches (alerts.py); on "default", as its deliveries.
          "evaluate-alerts": BeatEntry(EVALUATE_ALERTS, 60.0),
          # The predictions table's coming days' partitions, and what is older than the retention gone
          # (partitions.py); on "default": a busy ingest pool must not hold it up.
          "keep-prediction-days": BeatEntry(KEEP_DAYS, 3600.0, queue="default"),
          # The hours whose predictions or actuals changed tallied again (rollups.py), which performance
          # and the operating metrics read; on "default", as the upkeep above.
          "refresh-tallies": BeatEntry(REFRESH_TALLIES, 60.0, queue="default"),
          # Every running A/B test, one analysis task each to the abtest pool (ab_analysis.py); on "default", as
          # the drift sweep.
          "sweep-ab-tests": BeatEntry(SWEEP_ABTESTS, ANALYSE_EVERY_SECONDS, queue="default")},
)
