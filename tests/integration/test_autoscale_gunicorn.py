"""The serving autoscaler's hands on a real gunicorn: TTIN and TTOU change its worker count, as /proc shows.

A trivial WSGI app on a free port stands in for serving, so the test needs neither the stack's ports
nor its databases.
"""

import signal
import subprocess
import sys
import urllib.request

import pytest

from launch.autoscale import Autoscaler, GunicornPool, worker_pids
from tests.support.polling import wait_for
from tests.support.walks import free_port

APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


@pytest.fixture
def gunicorn(tmp_path):
    """A gunicorn master with one sync worker, and its port."""
    (tmp_path / "trivial_app.py").write_text(APP)
    port = free_port()
    master = subprocess.Popen([sys.executable, "-m", "gunicorn", "--chdir", str(tmp_path), "--bind",
                               f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning", "trivial_app:app"],
                              start_new_session=True)
    try:
        wait_for(lambda: len(worker_pids(master.pid)) == 1, what="gunicorn's first worker")
        yield master, port
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=30)


def workers_now(master_pid: int, count: int) -> set[int]:
    """The master's workers once there are `count` of them (a stopped worker takes a moment to exit)."""
    def counted():
        pids = worker_pids(master_pid)
        return pids if len(pids) == count else None

    return wait_for(counted, what=f"{count} workers")


def test_ttin_and_ttou_through_the_pool_add_and_remove_a_worker(gunicorn):
    master, port = gunicorn
    pool = GunicornPool(master.pid, workers=1)
    assert pool.ready()
    first = worker_pids(master.pid)

    pool.apply(+1)
    workers_now(master.pid, 2)
    pool.apply(+1)
    assert pool.workers == 3
    three = workers_now(master.pid, 3)
    assert first < three

    pool.apply(-1)
    assert pool.workers == 2
    two = workers_now(master.pid, 2)
    assert two < three
    # gunicorn stops its oldest worker; the pool still serves.
    assert not first & two
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.read() == b"ok"


def test_a_tick_on_the_pools_own_cpu_reports_scales_the_real_master(gunicorn):
    master, _ = gunicorn
    pool = GunicornPool(master.pid, workers=1)
    scaler = Autoscaler(pool, started_with=1, starting_count=lambda deployment_id: 1)
    scaling = {"min_replicas": 1, "max_replicas": 3, "target_cpu_utilization": 50.0, "scale_up_cooldown": 0.0,
               "scale_down_cooldown": 0.0}

    def endpoints(cpu: float) -> list[dict]:
        # The replicas report as serving's do (host:pid); a report from a pid outside the pool is ignored.
        reports = [{"replica": name, "cpu_percent": cpu, "healthy": True, "reported_at": "2025-01-01T00:00:00Z"}
                   for name in pool.replicas() | {"elsewhere:1"}]
        return [{"live_deployment_id": "d1", "scaling_config": scaling, "replicas": reports}]

    assert scaler.tick(endpoints(90.0), now=0.0).rule == "CPU above target"
    workers_now(master.pid, 2)
    assert scaler.tick(endpoints(10.0), now=1.0).rule == "CPU below half the target"
    workers_now(master.pid, 1)
    assert pool.workers == 1
