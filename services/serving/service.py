"""Serving's manifest: the data plane, replicas that hold endpoints' models in memory and predict."""

from shared.service_spec import Location, ServiceSpec, WebProcess

SERVICE = ServiceSpec(
    name="serving",
    summary="model servers: an endpoint's live and candidate versions in memory, predictions",
    register="services.serving.api:register",
    port=8105,
    # A regex: nginx tries it before the deployment service's /api/v1/endpoints prefix.
    locations=(Location("^/api/v1/endpoints/[^/]+/predict$", "regex"),),
    # Predictions are CPU-bound: processes, each answering one request at a time on its own thread
    # (the sync worker). Request threads fought each other for the GIL: single-row p99 under 8 clients
    # was 31-73 ms with gthread's 2 threads, 23-39 ms with 1, 17-21 ms with none.
    web=WebProcess(workers=2, threads=0),
    settings=("deployment_url", "max_predict_rows", "allow_pickle", "replica_poll_seconds"),
)
