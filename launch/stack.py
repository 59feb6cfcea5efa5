"""`make stack`: the distributed platform on localhost, one process per part.

Every service of the catalog under gunicorn, the outbox relay, the event consumers, a Celery worker
and beat, and nginx in front routing /api/v1/<area> by prefix and serving the one API document, all
against Postgres, RabbitMQ and Redis (URLs from MODELYARD_*).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from launch import catalog, gateway
from launch.processes import UNIX_PATH_MAX, Supervisor, local_secrets, run_preparation
from shared.config import load_settings
from shared.service_spec import ServiceSpec

STACK_DEFAULTS = {
    "MODELYARD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/modelyard",
    "MODELYARD_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "MODELYARD_EVENTS_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "MODELYARD_REDIS_URL": "redis://127.0.0.1:6379/0",
    # Training and deployment ask the registry over HTTP when they run as separate processes.
    "MODELYARD_REGISTRY_URL": f"http://127.0.0.1:{catalog.service('registry').port}",
    # Serving replicas poll the deployment service for what each endpoint serves.
    "MODELYARD_DEPLOYMENT_URL": f"http://127.0.0.1:{catalog.service('deployment').port}",
    # The dashboards' sign-in asks identity to check a password.
    "MODELYARD_IDENTITY_URL": f"http://127.0.0.1:{catalog.service('identity').port}",
    # Clients come through nginx, which appends the address it saw to X-Forwarded-For (login throttling).
    "MODELYARD_PROXY_HOPS": "1",
}


def ports() -> dict[str, int]:
    """Each web service's local port, from its manifest."""
    return {spec.name: spec.port for spec in catalog.SERVICES if spec.port}


def upstream(var_dir: Path, service: str) -> str:
    """Where nginx reaches a service: its Unix socket, which spares every request a loopback TCP hop
    (~5% of a model create here), unless the path is too long for a socket address."""
    path = var_dir / "sockets" / f"{service}.sock"
    return f"unix:{path}" if len(str(path)) < UNIX_PATH_MAX else f"127.0.0.1:{ports()[service]}"


def workers(spec: ServiceSpec) -> int:
    """The manifest's worker count, or MODELYARD_<NAME>_WORKERS (the benchmarks size services so)."""
    return int(os.environ.get(f"MODELYARD_{spec.name.upper()}_WORKERS", spec.web.workers))


def render_nginx(var_dir: Path, port: int) -> Path:
    root = var_dir / "nginx"
    root.mkdir(parents=True, exist_ok=True)
    document = root / "openapi.json"
    # In a child: the supervisor, which lives as long as the platform, never imports Flask.
    subprocess.run([sys.executable, "-m", "launch.openapi", str(document)], check=True)
    server = gateway.render({
        **{gateway.upstream_variable(name): upstream(var_dir, name) for name in ports()},
        "GATEWAY_PORT": str(port),
        "OPENAPI_DOCUMENT": str(document),
    })
    conf = root / "nginx.conf"
    # Started by root, nginx would run its worker as `nobody`, which cannot reach the services' sockets
    # or its temp paths inside a private var dir: it runs as the user the rest of the stack runs as.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        user + "daemon off;\nworker_processes 1;\npid nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;\n"
        f"  fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;\n"
        + server + "}\n"
    )
    return conf


def main() -> int:
    for name, value in STACK_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.update(local_secrets(load_settings()))
    settings = load_settings()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        print("make stack needs nginx as its gateway: apt-get install nginx", file=sys.stderr)
        return 2
    login = run_preparation("--create-database")

    port = int(os.environ.get("MODELYARD_GATEWAY_PORT", "8000"))
    supervisor = Supervisor(env=dict(os.environ))
    var_dir = Path(settings.var_dir).resolve()
    (var_dir / "sockets").mkdir(parents=True, exist_ok=True)
    for spec in catalog.SERVICES:
        if not spec.port:
            continue
        # The port for other services (training asks the registry over HTTP), the socket for nginx.
        binds = sorted({f"127.0.0.1:{spec.port}", upstream(var_dir, spec.name)})
        supervisor.web(spec.name, binds, f"launch.apps:service_app({spec.name!r})", workers=workers(spec),
                       threads=spec.web.threads, var_dir=settings.var_dir)
    serving = catalog.service("serving")
    # The serving pool follows the live deployments' scaling configs, unless its size is given: a
    # benchmark compares a pool of a known size.
    if f"MODELYARD_{serving.name.upper()}_WORKERS" not in os.environ:
        supervisor.python("autoscale", "-m", "launch.autoscale",
                          "--master-pid", str(supervisor.children[serving.name].pid), "--workers", str(workers(serving)))
    supervisor.python("relay", "-m", "launch.events", "relay")
    supervisor.python("events", "-m", "launch.events", "consume")
    # The worker consumes every queue of the app's task_queues (their names carry the settings' prefix).
    # Two processes run trials in parallel on two cores; the second is forked when a second task is
    # waiting and stopped after 30 s without tasks, so the idle worker is its parent and one child.
    # Named by the queue prefix too: a second stack on the same broker (another prefix) is another node.
    supervisor.python("worker", "-m", "celery", "-A", "workers.celery_app", "worker", "--loglevel", "WARNING",
                      "--autoscale", "2,1", "--hostname", f"{settings.task_queue_prefix}worker@%h")
    supervisor.python("beat", "-m", "celery", "-A", "workers.beat", "beat", "--loglevel", "WARNING",
                      "--schedule", str(Path(settings.var_dir) / "celerybeat-schedule"))
    conf = render_nginx(var_dir, port)
    supervisor.start("gateway", [nginx, "-c", str(conf), "-p", str(conf.parent)])
    print(f"Modelyard stack: gateway http://127.0.0.1:{port}, "
          + ", ".join(f"{name} :{service_port}" for name, service_port in ports().items())
          + ", relay, event consumers, worker, beat"
          + (", serving autoscaler" if "autoscale" in supervisor.children else ""), flush=True)
    print(login, flush=True)
    return supervisor.wait()


if __name__ == "__main__":
    sys.exit(main())
