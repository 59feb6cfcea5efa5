"""Monitoring's manifest. No routes yet: it owns the predictions store, which the ingest pool fills from
serving's batches. The task name and queue live in shared.prediction_records, which serving also reads."""

from shared.prediction_records import QUEUE
from shared.service_spec import ServiceSpec

SERVICE = ServiceSpec(
    name="monitoring",
    summary="the predictions store, filled asynchronously from serving's prediction records",
    tables=("services.monitoring.tables",),
    task_modules=("workers.ingest",),
    queues=(QUEUE,),
)
