"""The one list of services, and what the platform derives from their manifests.

Adding a service is its folder, with a manifest (`services/<name>/service.py`), and one line in
SERVICES. The all-in-one app, `make run`'s event consumers, `make stack`'s processes, the gateway's
routes and API document, the Alembic table modules and the Celery app all read this module;
tests/unit/test_catalog.py checks docker-compose.yml and k8s/ against it.
"""

from __future__ import annotations

import importlib
from typing import Any

from services.deployment.service import SERVICE as DEPLOYMENT
from services.identity.service import SERVICE as IDENTITY
from services.monitoring.service import SERVICE as MONITORING
from services.registry.service import SERVICE as REGISTRY
from services.serving.service import SERVICE as SERVING
from services.training.service import SERVICE as TRAINING
from shared.service_spec import BeatEntry, ServiceSpec

SERVICES: tuple[ServiceSpec, ...] = (IDENTITY, REGISTRY, TRAINING, DEPLOYMENT, SERVING, MONITORING)

# What every service shares: the audit log, the outbox and consumer bookkeeping, idempotency keys, and
# beat's housekeeping on the "default" queue. It serves no routes of its own.
PLATFORM = ServiceSpec(
    name="platform",
    summary="audit log, outbox, processed events, idempotency keys, housekeeping",
    tables=("shared.audit", "shared.events.outbox", "shared.events.consumer", "shared.idempotency"),
    task_modules=("workers.maintenance",),
    queues=("default",),
    beat={
        "purge-sent-outbox": BeatEntry("workers.maintenance.purge_sent_outbox", 3600.0),
        "purge-stale-uploads": BeatEntry("workers.maintenance.purge_stale_uploads", 3600.0),
        "purge-idempotency-keys": BeatEntry("workers.maintenance.purge_idempotency_keys", 3600.0),
    },
)
DEFAULT_QUEUE = "default"


def everything() -> tuple[ServiceSpec, ...]:
    return (PLATFORM, *SERVICES)


def service(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(f"no service is named {name!r}; there are {', '.join(s.name for s in SERVICES)}")


def resolve(path: str) -> Any:
    """The object a manifest names as "module:attribute"."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def credentials() -> Any:
    """The shared.auth.Credentials of the one service that owns users and API keys."""
    (path,) = [spec.credentials for spec in SERVICES if spec.credentials]
    return resolve(path)


def table_modules() -> tuple[str, ...]:
    return tuple(module for spec in everything() for module in spec.tables)


def import_all_tables() -> None:
    """Import every table module, so that Alembic's metadata holds the whole schema."""
    for module in table_modules():
        importlib.import_module(module)


def consumers() -> tuple[str, ...]:
    return tuple(path for spec in SERVICES for path in spec.consumers)


def task_modules() -> tuple[str, ...]:
    return tuple(module for spec in everything() for module in spec.task_modules)


def queues() -> tuple[str, ...]:
    return tuple(queue for spec in everything() for queue in spec.queues)


def beat_schedule() -> dict[str, BeatEntry]:
    return {name: entry for spec in everything() for name, entry in spec.beat.items()}

