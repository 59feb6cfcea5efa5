"""Identity's manifest: what the composition root needs to know to run it."""

from shared.service_spec import Location, ServiceSpec, WebProcess

SERVICE = ServiceSpec(
    name="identity",
    summary="tokens, users and roles, API keys, the audit log's read side",
    register="services.identity.api:register",
    port=8101,
    locations=(Location("/api/v1/auth/"), Location("/api/v1/users"), Location("/api/v1/audit")),
    # Threads, not greenlets: a login spends ~30 ms in scrypt, where hashlib lets go of the GIL (two
    # hash at once on two cores) and a gevent loop would stall the worker's other requests.
    web=WebProcess(workers=1, threads=4),
    tables=("services.identity.tables",),
    credentials="services.identity.credentials:credentials",
    settings=("admin_username", "admin_password", "login_failures_per_user", "login_failures_per_address",
              "jwt_expires_seconds"),
)
