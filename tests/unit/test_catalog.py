"""Every place that runs the services agrees with their manifests (launch/catalog.py): a consumer, task,
table or route a manifest declares is where it must be, and nothing is wired that no manifest declares."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import services
import shared
from launch import apps, catalog, gateway
from shared.config import Settings
from shared.db import Base
from shared.events.consumer import EventConsumer, load_consumer
from shared.service_spec import READINESS_CHECKS

ROOT = Path(__file__).resolve().parents[2]
WEB = [spec for spec in catalog.SERVICES if spec.port]
SETTINGS = {"env": "development", "database_url": "sqlite://", "broker_url": "memory://", "redis_url": "",
            "jwt_secret": "unit"}


def test_every_manifest_names_code_that_exists():
    setting_names = {field.name for field in dataclasses.fields(Settings)}
    names = [spec.name for spec in catalog.everything()]
    assert len(names) == len(set(names))
    assert len({spec.port for spec in WEB}) == len(WEB)
    for spec in catalog.everything():
        if spec.register:
            assert callable(catalog.resolve(spec.register)), spec.name
        for path in spec.consumers:
            assert isinstance(load_consumer(path), EventConsumer), path
        for module in (*spec.tables, *spec.task_modules):
            importlib.import_module(module)
        assert set(spec.readiness) <= set(READINESS_CHECKS), spec.name
        assert set(spec.settings) <= setting_names, spec.name


def _all_modules(package) -> list[str]:
    return [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def test_every_table_is_defined_in_a_module_a_manifest_declares():
    for module in (*_all_modules(shared), *_all_modules(services)):
        importlib.import_module(module)
    declared = set(catalog.table_modules())
    for mapper in Base.registry.mappers:
        assert mapper.class_.__module__ in declared, f"{mapper.class_.__name__} ({mapper.class_.__module__})"


def _routes(app) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")}


def _sample(rule: str) -> str:
    return re.sub(r"<[^>]+>", "x", rule)


def _gateway_target(path: str) -> str | None:
    """The upstream nginx picks for `path` from the committed template: an exact match, else the first
    regex that matches, else the longest prefix."""
    locations = re.findall(r"location (=|~)? ?(\S+) \{ (?:proxy_pass http://(\w+)|alias)",
                           gateway.TEMPLATE.read_text())
    for kind, pattern, target in locations:
        if kind == "=" and pattern == path:
            return target or "gateway"
    for kind, pattern, target in locations:
        if kind == "~" and re.search(pattern, path):
            return target
    prefixes = [(pattern, target) for kind, pattern, target in locations if not kind and path.startswith(pattern)]
    return max(prefixes, key=lambda pair: len(pair[0]))[1] if prefixes else None


def test_the_all_in_one_app_serves_every_services_routes_and_no_others():
    apart = set().union(*(_routes(apps.service_app(spec.name, SETTINGS)) for spec in WEB))
    assert _routes(apps.create_app(SETTINGS)) == apart | {"/api/v1/openapi.json"}


@pytest.mark.parametrize("spec", WEB, ids=lambda spec: spec.name)
def test_the_gateway_routes_each_of_a_services_paths_to_it(spec):
    for rule in _routes(apps.service_app(spec.name, SETTINGS)) - {"/api/v1/openapi.json"}:
        assert _gateway_target(_sample(rule)) == spec.name, rule
    assert _gateway_target("/api/v1/openapi.json") == "gateway"


def test_the_committed_gateway_template_is_the_one_the_manifests_render():
    assert gateway.TEMPLATE.read_text() == gateway.template(), "stale: run `python -m launch.gateway`"


def test_the_celery_app_carries_every_manifests_tasks_queues_and_beat_entries():
    from workers.celery_app import make_celery

    from shared.config import load_settings

    app = make_celery(load_settings({**SETTINGS, "task_queue_prefix": "t-"}))
    app.loader.import_default_modules()
    assert {queue.name for queue in app.conf.task_queues} == {"t-" + queue for queue in catalog.queues()}
    tasks = {name for name in app.tasks if not name.startswith("celery.")}
    for name in tasks:
        queue = app.amqp.router.route({}, name)["queue"].name
        owner = name.split(".")[0]
        assert queue == "t-" + (owner if owner in catalog.queues() else catalog.DEFAULT_QUEUE), name
    for name, entry in catalog.beat_schedule().items():
        assert entry.task in tasks, name
        assert app.conf.beat_schedule[name]["schedule"] == entry.every_seconds


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _k8s() -> list[dict]:
    return [doc for path in sorted((ROOT / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def _closes_apps_as_make_stack_does(commands: list[list[str]]) -> None:
    # A worker that stops closes its app (serving's prediction log is flushed), as launch/processes.py runs it.
    for command in commands:
        assert command[command.index("-c") + 1] == "python:launch.gunicorn_hooks", command


def test_compose_runs_every_service_its_consumers_and_routes_to_each():
    compose = _compose()
    for spec in WEB:
        assert f"launch.apps:service_app('{spec.name}')" in compose[spec.name]["command"], spec.name
        assert compose["gateway"]["environment"][gateway.upstream_variable(spec.name)] == f"{spec.name}:8000"
    assert compose["relay"]["command"] == ["python", "-m", "launch.events", "relay"]
    assert compose["events"]["command"] == ["python", "-m", "launch.events", "consume"]
    gunicorns = {name for name, service in compose.items() if "gunicorn" in service.get("command", [])}
    assert gunicorns == {spec.name for spec in WEB}
    _closes_apps_as_make_stack_does([compose[spec.name]["command"] for spec in WEB])


def test_k8s_runs_every_service_its_consumers_and_routes_to_each():
    documents = _k8s()
    containers = {doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]
                  for doc in documents if doc["kind"] == "Deployment"}
    kube_services = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "Service"}
    gateway_env = {item["name"]: item["value"] for item in containers["gateway"]["env"]}
    for spec in WEB:
        assert f"launch.apps:service_app('{spec.name}')" in containers[spec.name]["command"], spec.name
        assert spec.name in kube_services
        assert gateway_env[gateway.upstream_variable(spec.name)] == f"{spec.name}:8000"
    assert containers["relay"]["command"] == ["python", "-m", "launch.events", "relay"]
    assert containers["events"]["command"] == ["python", "-m", "launch.events", "consume"]
    gunicorns = {name for name, container in containers.items() if "gunicorn" in container.get("command", [])}
    assert gunicorns == {spec.name for spec in WEB}
    _closes_apps_as_make_stack_does([containers[spec.name]["command"] for spec in WEB])


def test_the_manifests_an_endpoint_renders_run_the_image_the_platforms_serving_runs():
    compose = _compose()
    assert compose["deployment"]["environment"]["MODELYARD_SERVING_IMAGE"] == compose["serving"]["image"]
    containers = {doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]
                  for doc in _k8s() if doc["kind"] == "Deployment"}
    deployment_env = {item["name"]: item["value"] for item in containers["deployment"]["env"]}
    assert deployment_env["MODELYARD_SERVING_IMAGE"] == containers["serving"]["image"]
