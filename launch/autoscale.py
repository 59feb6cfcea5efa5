"""`make stack`'s serving pool, sized by the live deployments' scaling configs: what Kubernetes' HPA
does for the serving Deployment, done here by signalling serving's gunicorn master.

One serving pool serves every endpoint, so its bounds are the loosest the live deployments ask for:
the largest `min_replicas` and `max_replicas`, the smallest `target_cpu_utilization`, the longest
cooldowns. With nothing live the pool keeps the size it started with. A deployment that becomes live
moves the pool to its `deployment_config.replicas` (the starting count); after that, CPU decides:

- mean CPU of the pool's healthy replicas above the target: one more worker (gunicorn's TTIN), at
  most one per `scale_up_cooldown` seconds after the last scale up;
- below half the target: one fewer (TTOU), once `scale_down_cooldown` seconds have passed since the
  last scaling of either direction. The gap between half the target and the target is the hysteresis:
  removing one of n workers whose mean is under target/2 leaves at most target/2 * n/(n-1) <= target
  on the rest, so a scale down never by itself makes the next tick scale up again.

Utilization is a replica's `cpu_percent` (percent of one core) as it reports it to the deployment
service; under Kubernetes the HPA measures it against the pod's CPU request instead.

Run by the stack's supervisor as `python -m launch.autoscale --master-pid PID --workers N`: a process
of its own, not a thread of the supervisor, which never imports Flask (minting a token needs it).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask

from shared.auth import init_auth, issue_token
from shared.config import Settings, load_settings
from shared.service_client import Fetch, ServiceUnavailable, over_http

log = logging.getLogger("modelyard.autoscale")

INTERVAL_SECONDS = 5.0
# The loop reads the endpoints as this principal; viewer is the least role that may (GET /api/v1/endpoints).
PRINCIPAL = "service:autoscale"
BELOW_MIN, ABOVE_MAX, STARTING = "below min_replicas", "above max_replicas", "starting count"


# ---- the decision ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """The serving pool's bounds; `target_cpu` None: nothing is live, the pool keeps its size."""

    min_replicas: int
    max_replicas: int
    target_cpu: float | None
    up_cooldown: float
    down_cooldown: float


@dataclass(frozen=True)
class Decision:
    step: int  # +1 add a worker, -1 remove one, 0 hold
    rule: str  # which rule decided: the log says when it changes
    detail: str


def pool_policy(scaling_configs: list[dict[str, Any]], started_with: int) -> Policy:
    """The loosest bounds over the live deployments' scaling configs, so that no endpoint gets less
    than it asked for; with none, the pool stays at `started_with` (the manifest's workers)."""
    if not scaling_configs:
        return Policy(started_with, started_with, None, 0.0, 0.0)
    return Policy(
        min_replicas=max(c["min_replicas"] for c in scaling_configs),
        max_replicas=max(c["max_replicas"] for c in scaling_configs),
        target_cpu=min(c["target_cpu_utilization"] for c in scaling_configs),
        up_cooldown=max(c["scale_up_cooldown"] for c in scaling_configs),
        down_cooldown=max(c["scale_down_cooldown"] for c in scaling_configs),
    )


def decide(*, policy: Policy, workers: int, cpu: float | None, last_up: float | None, last_down: float | None,
           now: float, starting: int | None = None) -> Decision:
    """One step of the pool toward its bounds, a new deployment's starting count, or the CPU target.

    `cpu`: the mean `cpu_percent` of the pool's healthy replicas (None: none reported); `last_up` and
    `last_down`: when the pool last grew and shrank (None: never); `starting`: the starting count of
    a deployment that became live, until the pool reaches it.
    """
    low, high = policy.min_replicas, policy.max_replicas
    if workers < low:
        return Decision(+1, BELOW_MIN, f"{workers} workers, min_replicas {low}")
    if workers > high:
        return Decision(-1, ABOVE_MAX, f"{workers} workers, max_replicas {high}")
    if starting is not None:
        goal = min(max(starting, low), high)
        if workers != goal:
            return Decision(1 if goal > workers else -1, STARTING,
                            f"a new live deployment starts with {starting} replicas ({goal} within "
                            f"[{low}, {high}]); {workers} workers")
    if policy.target_cpu is None:
        return Decision(0, "no live endpoint", f"the pool keeps its {workers} workers")
    if cpu is None:
        return Decision(0, "no CPU reports", "no healthy replica of the pool has reported")
    target = policy.target_cpu
    if cpu > target:
        if workers >= high:
            return Decision(0, "at max_replicas", f"CPU {cpu:.0f}% > target {target:g}%, {workers} workers")
        wait = _cooldown_left(policy.up_cooldown, now, last_up)
        if wait > 0:
            return Decision(0, "up-cooldown", f"CPU {cpu:.0f}% > target {target:g}%, {wait:.0f} s to wait")
        return Decision(+1, "CPU above target", f"CPU {cpu:.0f}% > target {target:g}%")
    if cpu < target / 2:
        if workers <= low:
            return Decision(0, "at min_replicas", f"CPU {cpu:.0f}% < {target / 2:g}%, {workers} workers")
        last = max((t for t in (last_up, last_down) if t is not None), default=None)
        wait = _cooldown_left(policy.down_cooldown, now, last)
        if wait > 0:
            return Decision(0, "down-cooldown", f"CPU {cpu:.0f}% < {target / 2:g}%, {wait:.0f} s to wait")
        return Decision(-1, "CPU below half the target", f"CPU {cpu:.0f}% < {target / 2:g}% (target {target:g}%)")
    return Decision(0, "CPU within band", f"CPU {cpu:.0f}% in [{target / 2:g}%, {target:g}%]")


def _cooldown_left(cooldown: float, now: float, last: float | None) -> float:
    return 0.0 if last is None else cooldown - (now - last)


def pool_cpu(endpoints: list[dict[str, Any]], replicas: set[str]) -> float | None:
    """The mean `cpu_percent` of the healthy replicas named in `replicas` (`host:pid`, the pool's workers
    now: a worker already removed, or another stack's, does not count). A replica serving several
    endpoints reports on each; its newest report counts once."""
    newest: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        for report in endpoint.get("replicas") or ():
            name = report["replica"]
            if (name in replicas and report["healthy"] and report.get("cpu_percent") is not None
                    and (name not in newest or report["reported_at"] > newest[name]["reported_at"])):
                newest[name] = report
    if not newest:
        return None
    return sum(report["cpu_percent"] for report in newest.values()) / len(newest)


# ---- the pool -------------------------------------------------------------------------------------

def worker_pids(master_pid: int) -> set[int]:
    """The pids of the master's children (gunicorn's workers), read from /proc."""
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                # The command name in parentheses may hold spaces; the parent pid is the second field after it.
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == master_pid:
            children.add(int(entry))
    return children


class GunicornPool:
    """A gunicorn master's worker count, changed one worker at a time by its TTIN and TTOU signals.

    The count is the one the master keeps (its `num_workers`), which each signal moves by one: counting
    processes would include a worker told to stop, which lives on until its requests finish. Two
    signals of one kind sent before the master handles the first arrive as one: the loop sends at most
    one per tick.
    """

    def __init__(self, master_pid: int, workers: int):
        self.master_pid, self.workers = master_pid, workers

    def ready(self) -> bool:
        # A master with no worker yet may not have installed its handlers, and TTIN's default action
        # stops a process.
        return bool(worker_pids(self.master_pid))

    def replicas(self) -> set[str]:
        """The workers' names as they report themselves to the deployment service (`host:pid`)."""
        host = socket.gethostname()
        return {f"{host}:{pid}" for pid in worker_pids(self.master_pid)}

    def apply(self, step: int) -> None:
        if step:
            os.kill(self.master_pid, signal.SIGTTIN if step > 0 else signal.SIGTTOU)
            self.workers += step


# ---- the loop -------------------------------------------------------------------------------------

class Autoscaler:
    """What the loop remembers between ticks: the live deployments seen, a starting count not yet
    reached, when the pool last grew and shrank, and the last rule logged."""

    def __init__(self, pool: GunicornPool, started_with: int, starting_count: Callable[[str], int]):
        self.pool, self.started_with, self.starting_count = pool, started_with, starting_count
        self.live: set[str] = set()
        self.starting: int | None = None
        self.last_up: float | None = None
        self.last_down: float | None = None
        self._rule = ""

    def tick(self, endpoints: list[dict[str, Any]], now: float) -> Decision:
        live = {str(e["live_deployment_id"]): e for e in endpoints if e.get("live_deployment_id")}
        new = live.keys() - self.live
        if new:
            # A deployment that just became live sets the pool's size; several at once: the largest.
            self.starting = max(self.starting_count(deployment_id) for deployment_id in new)
        self.live = set(live)
        policy = pool_policy([e["scaling_config"] for e in live.values() if e.get("scaling_config")],
                             self.started_with)
        cpu = pool_cpu(endpoints, self.pool.replicas())
        decision = decide(policy=policy, workers=self.pool.workers, cpu=cpu, last_up=self.last_up,
                          last_down=self.last_down, now=now, starting=self.starting)
        if decision.step:
            log.info("scale %s (%d -> %d workers): %s; %s", "up" if decision.step > 0 else "down",
                     self.pool.workers, self.pool.workers + decision.step, decision.rule, decision.detail)
        elif decision.rule != self._rule:  # a hold is logged when its reason changes, not every tick
            log.info("hold at %d workers: %s; %s", self.pool.workers, decision.rule, decision.detail)
        self._rule = decision.rule
        self.pool.apply(decision.step)
        if decision.step > 0:
            self.last_up = now
        elif decision.step < 0:
            self.last_down = now
        if decision.rule not in (BELOW_MIN, ABOVE_MAX, STARTING):
            self.starting = None  # reached: CPU decides from here
        return decision


def token_minter(settings: Settings) -> Callable[[], str]:
    """Fresh viewer tokens signed with the platform's secret, as serving's replicas mint theirs: no
    password or API key to store, the least role that reads endpoints, and each expires by itself."""
    app = Flask(__name__)
    init_auth(app, settings)

    def token() -> str:
        with app.app_context():
            return issue_token(user_id=PRINCIPAL, username="autoscale", role="viewer")

    return token


def read_all(fetch: Fetch, token: str, path: str) -> list[dict[str, Any]]:
    """Every item of a paginated list, page by page."""
    items, cursor = [], None
    while True:
        status, body = fetch(path + "?limit=100" + (f"&cursor={cursor}" if cursor else ""),
                             {"Authorization": f"Bearer {token}"})
        if status != 200:
            raise ServiceUnavailable(f"GET {path} answered {status}.")
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--master-pid", type=int, required=True, help="serving's gunicorn master")
    parser.add_argument("--workers", type=int, required=True, help="the workers it started with")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="modelyard autoscale: %(message)s")
    settings = load_settings()
    token = token_minter(settings)
    fetch = over_http(settings.deployment_url)

    def starting_count(deployment_id: str) -> int:
        status, body = fetch(f"/api/v1/deployments/{deployment_id}", {"Authorization": f"Bearer {token()}"})
        if status != 200:
            raise ServiceUnavailable(f"GET /api/v1/deployments/{deployment_id} answered {status}.")
        return body["config"]["deployment_config"]["replicas"]

    pool = GunicornPool(args.master_pid, args.workers)
    scaler = Autoscaler(pool, args.workers, starting_count)
    reachable = True
    while True:
        time.sleep(INTERVAL_SECONDS)
        if not pool.ready():
            continue
        try:
            scaler.tick(read_all(fetch, token(), "/api/v1/endpoints"), time.monotonic())
        except ServiceUnavailable as exc:  # starting up, or restarting: the next tick asks again
            if reachable:
                log.warning("holding the pool at %d workers: %s", pool.workers, exc.detail)
            reachable = False
        else:
            reachable = True


if __name__ == "__main__":
    sys.exit(main())
