"""The Flask apps, built from the catalog: one per service (`make stack`, docker-compose, k8s) and the
all-in-one app of `make run`, which mounts every service's routes in one process."""

from __future__ import annotations

from typing import Callable

from flask import Flask

from launch import catalog
from launch.forward import Forward
from shared.config import Settings
from shared.service_spec import ServiceSpec
from shared.web import create_service_app


def _build(name: str, specs: tuple[ServiceSpec, ...], settings: Settings | dict | None) -> Flask:
    # A service without routes (monitoring, for now: only its workers run) adds none.
    return create_service_app(name, [catalog.resolve(spec.register) for spec in specs if spec.register], settings,
                              credentials=catalog.credentials(),
                              readiness=tuple(dict.fromkeys(check for spec in specs for check in spec.readiness)))


def create_app(settings: Settings | dict | None = None, *, apart: tuple[str, ...] = ()) -> Flask:
    """Every service's routes in one app (gunicorn: `launch.apps:create_app()`), but those of the services
    `apart`, which run in processes of their own."""
    return _build("modelyard", tuple(spec for spec in catalog.SERVICES if spec.name not in apart), settings)


def run_app(serving_socket: str) -> Callable:
    """`make run`'s web app: everything, with predictions forwarded to the serving process on `serving_socket`."""
    return Forward(create_app(apart=("serving",)), "serving", serving_socket)


def service_app(name: str, settings: Settings | dict | None = None) -> Flask:
    """One service's app (gunicorn: `launch.apps:service_app('registry')`)."""
    return _build(name, (catalog.service(name),), settings)
