"""The benchmark's instruments: client processes that time HTTP requests, and /proc readings of the
servers' memory and CPU.

Clients are separate processes (one per concurrent client, each with one keep-alive HTTP/1.1
connection of its own, see `Connection`), so the GIL never serialises them. Each phase also reports the CPU the
clients, the server's process tree and the whole machine used, so a saturated client, or a machine
shared with other work, is visible beside the figure it would distort.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import statistics
import time
from pathlib import Path

# (method, path, body): one request as a client sends it.
Request = tuple[str, str, bytes | None]
TICKS = os.sysconf("SC_CLK_TCK")


def tree_pids(root: int) -> list[int]:
    """`root` and every descendant (the stack's children run in their own sessions, but keep their parent)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def _status_kib(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_label(pid: int) -> str:
    """What a process is: the module after `python -m`, the script a python runs, or the program."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        return "?"
    program = Path(argv[0]).name
    if program.startswith("python") and len(argv) > 2 and argv[1] == "-m":
        # One module runs several parts: gunicorn's app, celery's command (worker, beat) tells them apart.
        if argv[2] == "gunicorn":
            app = argv[-1]
            if "service_app(" in app:  # the stack serves every service from one factory; its argument names it
                return "gunicorn " + app.split("(", 1)[1].strip("')\"")
            return f"gunicorn {app.split(':')[0]}"
        if argv[2] == "celery":
            return "celery " + next((arg for arg in argv[3:] if arg in ("worker", "beat")), "")
        return argv[2]
    if program.startswith("python") and len(argv) > 1:
        return Path(argv[1]).name
    return program


def memory(root: int) -> dict:
    """RSS and PSS of the whole tree in MiB, and RSS per kind of process."""
    pids = tree_pids(root)
    by_process: dict[str, float] = {}
    for pid in pids:
        label = process_label(pid)
        by_process[label] = by_process.get(label, 0.0) + _status_kib(f"/proc/{pid}/status", "VmRSS:") / 1024
    return {
        "processes": len(pids),
        "rss_mib": round(sum(by_process.values()), 1),
        "pss_mib": round(sum(_status_kib(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids) / 1024, 1),
        "rss_by_process_mib": {name: round(mib, 1) for name, mib in sorted(by_process.items())},
    }


def cpu_seconds(labels: dict[int, str]) -> dict[str, float]:
    """CPU (user + system) the processes used so far, summed per label."""
    used: dict[str, float] = {}
    for pid, label in labels.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[label] = used.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return used


def wait_until_idle(root: int, *, below: float = 0.05, window: float = 1.0, timeout: float = 60.0) -> float:
    """Wait until the tree uses under `below` cores over `window` seconds (start-up done); returns the wait."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        labels = {pid: "" for pid in tree_pids(root)}
        before = sum(cpu_seconds(labels).values())
        time.sleep(window)
        if sum(cpu_seconds(labels).values()) - before < below * window:
            break
    return time.monotonic() - began


def start_time(pid: int) -> int | None:
    """When the process started, in ticks since boot: with the pid, it names one process for good."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS  # all but idle and iowait


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for the benchmark.

    http.client cost ~300 us of CPU a request here, a sixth of a 2-core machine at the rates measured,
    taken from the server under test. Requests are encoded before the clock starts and responses
    parsed by hand (Content-Length or chunked), which costs a few tens of microseconds.
    """

    def __init__(self, address: tuple[str, int], headers: dict, timeout: float = 60.0):
        self.address, self.timeout = address, timeout
        self.header_lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.sock: socket.socket | None = None
        self.buffer = b""

    def encode(self, request: Request) -> bytes:
        method, path, body = request
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n{self.header_lines}"
        return (head + f"Content-Length: {len(body or b'')}\r\n\r\n").encode() + (body or b"")

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """Send one encoded request, return (status, body); reconnects first if the last one failed."""
        if self.sock is None:
            self.connect()
        self.sock.sendall(raw)
        head = self._read_until(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower() + b"\r\n"
        if b"\r\ntransfer-encoding: chunked" in headers:
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                body += self._read_exactly(size + 2)[:size]
                if size == 0:
                    return status, body
        start = headers.find(b"\r\ncontent-length:")
        length = int(headers[start + 17:headers.index(b"\r\n", start + 2)]) if start >= 0 else 0
        body = self._read_exactly(length)
        if b"\r\nconnection: close\r\n" in headers:
            self.close()  # the next request opens a new connection
        return status, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill()
        found, self.buffer = self.buffer[:end], self.buffer[end + len(marker):]
        return found

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        found, self.buffer = self.buffer[:size], self.buffer[size:]
        return found


def client(address: tuple[str, int], headers: dict, requests: list[Request], expect: int, barrier, results) -> None:
    """One client process: a keep-alive connection, the requests in order, each one timed."""
    conn = Connection(address, headers)
    encoded = [conn.encode(request) for request in requests]
    try:
        conn.connect()  # before the clock starts; a refusal shows up as the first request's error
    except OSError:
        conn.close()
    latencies, ok, errors, first_error = [], 0, 0, None
    barrier.wait()
    cpu_start, start = time.process_time(), time.monotonic()
    for (method, path, _), raw in zip(requests, encoded):
        began = time.perf_counter()
        try:
            status, payload = conn.exchange(raw)
        except (OSError, ValueError) as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            conn.close()  # the next request reconnects
            continue
        latencies.append((time.perf_counter() - began) * 1000)
        if status == expect:
            ok += 1
        else:
            errors += 1
            first_error = first_error or f"{method} {path} -> {status} {payload[:300]!r}"
    conn.close()
    results.put({"start": start, "end": time.monotonic(), "cpu": time.process_time() - cpu_start,
                 "latencies": latencies, "ok": ok, "errors": errors, "first_error": first_error})


def run_phase(target, batches: list[list[Request]], expect: int = 200) -> dict:
    """Run one batch of requests per concurrent client; throughput, latency and who used the CPU."""
    context = mp.get_context("fork")
    barrier, results = context.Barrier(len(batches) + 1), context.Queue()
    workers = [context.Process(target=client, args=((target.host, target.port), target.headers, batch, expect,
                                                    barrier, results)) for batch in batches]
    for worker in workers:
        worker.start()
    server = {pid: process_label(pid) for pid in tree_pids(target.pid)}
    server_before, machine_before = cpu_seconds(server), machine_busy_seconds()
    barrier.wait(timeout=60)
    outcomes = [results.get(timeout=3600) for _ in workers]
    server_after, machine_cpu = cpu_seconds(server), machine_busy_seconds() - machine_before
    server_cpu = {label: max(0.0, used - server_before.get(label, 0.0)) for label, used in server_after.items()}
    for worker in workers:
        worker.join()
    wall = max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes)
    latencies = sorted(value for o in outcomes for value in o["latencies"])
    errors = sum(o["errors"] for o in outcomes)
    return {
        "clients": len(batches),
        "requests": sum(len(batch) for batch in batches),
        "errors": errors,
        "first_error": next((o["first_error"] for o in outcomes if o["first_error"]), None),
        "seconds": round(wall, 3),
        "per_second": round(sum(o["ok"] for o in outcomes) / wall, 1) if wall else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        # In cores: 1.0 is one core busy for the whole phase.
        "client_cpu": round(sum(o["cpu"] for o in outcomes) / wall, 2),
        "server_cpu": round(sum(server_cpu.values()) / wall, 2),
        "server_cpu_by_process": {label: round(used / wall, 2) for label, used in sorted(server_cpu.items())},
        "machine_cpu": round(machine_cpu / wall, 2),
    }


def percentile(sorted_values: list[float], pct: int) -> float | None:
    if len(sorted_values) < 2:
        return sorted_values[0] if sorted_values else None
    return round(statistics.quantiles(sorted_values, n=100, method="inclusive")[pct - 1], 2)


def split(requests: list[Request], clients: int) -> list[list[Request]]:
    return [requests[i::clients] for i in range(clients)]


def fetch(target, request: Request) -> tuple[int, bytes]:
    """One request on a fresh connection, untimed: for start-up probes and checks. Status 0 if unreachable."""
    conn = Connection((target.host, target.port), target.headers, timeout=10)
    try:
        return conn.exchange(conn.encode(request))
    except (OSError, ValueError):
        return 0, b""
    finally:
        conn.close()
