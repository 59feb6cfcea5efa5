"""The registry's manifest: what the composition root needs to know to run it."""

from shared.service_spec import Location, ServiceSpec, WebProcess

SERVICE = ServiceSpec(
    name="registry",
    summary="models, versions, aliases, datasets, artifacts and lineage",
    register="services.registry.api:register",
    port=8102,
    locations=(Location("/api/v1/models"), Location("/api/v1/datasets")),
    # It takes the heavy read and write traffic: two workers of greenlets that wait on Postgres.
    web=WebProcess(workers=2),
    tables=("services.registry.tables",),
    consumers=("services.registry.handlers:training_outcomes", "services.registry.handlers:deployment_outcomes"),
    settings=("allow_pickle", "max_csv_columns", "max_upload_bytes", "cache_ttl_seconds"),
)
