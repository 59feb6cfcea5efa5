"""What a service declares about itself, once, in its manifest (`services/<name>/service.py`).

The composition root (launch/) derives everything else from the manifests: the all-in-one app of
`make run`, the consumers its web worker runs, `make stack`'s processes and the gateway's routes, the
Alembic table modules, and the Celery app's task modules, queues and beat schedule. A manifest names
code by dotted path ("module:attribute") and imports nothing heavy, so reading every manifest costs
nothing: beat and the supervisors read them without loading Flask, SQLAlchemy or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

# What a readiness check may name: a request of the service cannot be answered without it.
READINESS_CHECKS = ("database", "broker", "cache")


@dataclass(frozen=True)
class Location:
    """A path the gateway sends to the service, as nginx matches it: by prefix, exactly (=) or by regex (~).

    nginx tries regex locations before the longest prefix wins, so a regex can take part of another
    service's prefix (a model's trainings belong to training, the rest of /models to the registry).
    """

    path: str
    match: Literal["prefix", "exact", "regex"] = "prefix"


@dataclass(frozen=True)
class WebProcess:
    """How `make stack` runs the service under gunicorn: worker processes, and threads per worker
    (None: gevent greenlets, for services whose requests mostly wait on Postgres; 0: gunicorn's sync
    worker, one request at a time on the worker's own thread, for CPU-bound requests)."""

    workers: int = 1
    threads: int | None = None


@dataclass(frozen=True)
class BeatEntry:
    """A task beat sends every `every_seconds`; to its name's queue unless `queue` is given."""

    task: str
    every_seconds: float
    queue: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    summary: str
    # "module:function" taking (flask_smorest.Api, shared.web.Runtime) that mounts the service's routes.
    register: str | None = None
    # `make stack`'s local port (the socket nginx uses is named for the service).
    port: int | None = None
    locations: tuple[Location, ...] = ()
    web: WebProcess = WebProcess()
    # Modules defining the service's tables (Alembic's autogenerate and check must see them all).
    tables: tuple[str, ...] = ()
    # "module:factory" returning a shared.events.consumer.EventConsumer.
    consumers: tuple[str, ...] = ()
    # Modules holding the Celery tasks of the service's worker pools, and the queues those pools read.
    # A task named "<queue>.<task>" goes to that queue; others to the platform's "default".
    task_modules: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    beat: Mapping[str, BeatEntry] = field(default_factory=dict)
    # What /readyz demands (READINESS_CHECKS); the rest is reported, never a reason to stop serving.
    readiness: tuple[str, ...] = ("database",)
    # "module:attribute" of the shared.auth.Credentials every app authenticates with: exactly one service,
    # the owner of users and API keys, supplies it.
    credentials: str | None = None
    # The Settings fields only this service reads (documentation, checked to exist).
    settings: tuple[str, ...] = ()
