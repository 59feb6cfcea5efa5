"""The Python client's overhead per call (issue 15): `client.models.get(id)` against the same GET through
a bare `requests.Session`, on the embedded platform (`make run`'s `python -m launch.run`).

    .venv/bin/python -m bench.client [--calls 2000] [--rounds 10]

Each side keeps its own connection open and reads the same (cached) model; they take turns, a round of each at a time, so the server's and the machine's drift touch both alike. Printed:
the median and p99 wall time per call of each, and the client process's CPU per call (what the client adds
is its own CPU: the server's time is the same on both sides), and the differences. Target: under 1 ms.
It prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from modelyard.client import Client

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-client-pw"


def start_platform(port: int, var_dir: Path) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
           "MODELYARD_VAR_DIR": str(var_dir), "MODELYARD_BIND": f"127.0.0.1:{port}",
           "MODELYARD_ADMIN_PASSWORD": PASSWORD}
    log = (var_dir / "run.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "launch.run"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the platform exited early; see {var_dir / 'run.log'}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the platform did not start within 120 s; see {var_dir / 'run.log'}")


def timed(call, calls: int) -> tuple[list[float], float]:
    """Wall time of each call, and the process's CPU time per call, in seconds."""
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        began = time.perf_counter()
        call()
        walls.append(time.perf_counter() - began)
    return walls, (time.process_time() - cpu) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls per side")
    parser.add_argument("--rounds", type=int, default=10, help="turns each side takes")
    parser.add_argument("--port", type=int, default=0, help="where make run listens (default: a free port)")
    args = parser.parse_args(argv)

    var_dir = Path(tempfile.mkdtemp(prefix="modelyard-client-bench-"))
    if not args.port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            args.port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{args.port}"
    platform = start_platform(args.port, var_dir)
    try:
        client = Client(base, username="admin", password=PASSWORD)
        model = client.models.create("bench-client", type="classification", features=["a", "b"])
        raw = requests.Session()
        raw.headers["Authorization"] = f"Bearer {client.http.token}"
        url = f"{base}/api/v1/models/{model.id}"
        sides = {"requests.Session": lambda: raw.get(url).json(), "modelyard.client": lambda: client.models.get(model.id)}
        for call in sides.values():  # warm: connections open, the model cached, code paths loaded
            timed(call, 100)
        walls = {name: [] for name in sides}
        cpu = {name: [] for name in sides}
        per_round = max(1, args.calls // args.rounds)
        for _ in range(args.rounds):
            for name, call in sides.items():
                took, cpu_per_call = timed(call, per_round)
                walls[name] += took
                cpu[name].append(cpu_per_call)
    finally:
        os.killpg(platform.pid, signal.SIGTERM)
        platform.wait(timeout=30)

    print(f"Client overhead: GET /api/v1/models/<id> (cached) x {per_round * args.rounds} per side on make run; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'side':<18} {'median ms':>10} {'p99 ms':>8} {'client CPU ms/call':>19}")
    figures = {}
    for name in sides:
        ordered = sorted(walls[name])
        figures[name] = (statistics.median(ordered), ordered[int(len(ordered) * 0.99)], statistics.median(cpu[name]))
        median, p99, cpu_ms = figures[name]
        print(f"{name:<18} {median * 1e3:>10.3f} {p99 * 1e3:>8.3f} {cpu_ms * 1e3:>19.3f}")
    raw_side, ours = figures["requests.Session"], figures["modelyard.client"]
    print(f"{'difference':<18} {(ours[0] - raw_side[0]) * 1e3:>10.3f} {(ours[1] - raw_side[1]) * 1e3:>8.3f} "
          f"{(ours[2] - raw_side[2]) * 1e3:>19.3f}   (target: under 1 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
