"""Serving's manifest: the data plane, replicas that hold endpoints' models in memory and predict."""

from shared.service_spec import Location, ServiceSpec, WebProcess

SERVICE = ServiceSpec(
    name="serving",
    summary="model servers: an endpoint's live and candidate versions in memory, predictions",
    register="services.serving.api:register",
    port=8105,
    # A regex: nginx tries it before the deployment service's /api/v1/endpoints prefix.
    locations=(Location("^/api/v1/endpoints/[^/]+/predict$", "regex"),),
    # Predictions are CPU-bound: processes, not greenlets; a second thread overlaps a request's I/O.
    web=WebProcess(workers=2, threads=2),
    settings=("deployment_url", "max_predict_rows", "allow_pickle", "replica_poll_seconds"),
)
