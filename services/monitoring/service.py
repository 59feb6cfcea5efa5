"""Monitoring's manifest: it owns the predictions store, which the ingest pool fills from serving's batches
and clients fill through its API. The task name and queue live in shared.prediction_records, which
serving also reads."""

from shared.prediction_records import QUEUE
from shared.service_spec import Location, ServiceSpec

SERVICE = ServiceSpec(
    name="monitoring",
    summary="the predictions store: serving's records and those clients send",
    register="services.monitoring.api:register",
    port=8106,
    # A model's performance and drift belong here, the rest of /models to the registry.
    locations=(Location("^/api/v1/models/[^/]+/(performance|drift)$", "regex"), Location("/api/v1/monitoring"),
               Location("/api/v1/drift-reports")),
    settings=("registry_url", "deployment_url", "max_ingest_records"),
    tables=("services.monitoring.tables",),
    task_modules=("workers.ingest",),
    queues=(QUEUE,),
)
