"""The serving pool's scaling decisions under `make stack` (launch/autoscale.py), as pure functions."""

import pytest

from launch.autoscale import Autoscaler, Policy, decide, pool_cpu, pool_policy, read_all

LIVE = Policy(min_replicas=2, max_replicas=5, target_cpu=70.0, up_cooldown=60.0, down_cooldown=300.0)


def scaling(**overrides):
    return {"min_replicas": 1, "max_replicas": 4, "target_cpu_utilization": 70.0, "target_memory_utilization": 80.0,
            "scale_up_cooldown": 60.0, "scale_down_cooldown": 300.0, **overrides}


def step(*, workers=3, cpu=50.0, last_up=None, last_down=None, now=1000.0, starting=None, policy=LIVE):
    return decide(policy=policy, workers=workers, cpu=cpu, last_up=last_up, last_down=last_down, now=now,
                  starting=starting)


# ---- bounds ---------------------------------------------------------------------------------------

def test_the_pool_bounds_are_the_loosest_any_live_deployment_asks_for():
    policy = pool_policy([scaling(min_replicas=2, max_replicas=3, target_cpu_utilization=80, scale_up_cooldown=10),
                          scaling(min_replicas=1, max_replicas=6, target_cpu_utilization=50, scale_down_cooldown=30)],
                         started_with=2)
    assert policy == Policy(min_replicas=2, max_replicas=6, target_cpu=50, up_cooldown=60, down_cooldown=300)


def test_with_nothing_live_the_pool_keeps_the_size_it_started_with():
    policy = pool_policy([], started_with=2)
    assert policy == Policy(2, 2, None, 0.0, 0.0)
    assert step(policy=policy, workers=2, cpu=99.0).step == 0
    assert step(policy=policy, workers=2, cpu=99.0).rule == "no live endpoint"
    # Once the last deployment is gone, a pool the deployments had grown returns to its own size.
    assert step(policy=policy, workers=4, cpu=99.0).step == -1


@pytest.mark.parametrize("cpu", [None, 0.0, 50.0, 99.0])
def test_a_pool_below_min_replicas_grows_whatever_the_cpu_and_cooldown(cpu):
    decision = step(workers=1, cpu=cpu, last_up=999.0, last_down=999.0)
    assert (decision.step, decision.rule) == (+1, "below min_replicas")


@pytest.mark.parametrize("cpu", [None, 0.0, 99.0])
def test_a_pool_above_max_replicas_shrinks_whatever_the_cpu_and_cooldown(cpu):
    decision = step(workers=6, cpu=cpu, last_up=999.0, last_down=999.0)
    assert (decision.step, decision.rule) == (-1, "above max_replicas")


def test_high_cpu_at_max_replicas_holds():
    decision = step(workers=5, cpu=95.0)
    assert (decision.step, decision.rule) == (0, "at max_replicas")


def test_low_cpu_at_min_replicas_holds():
    decision = step(workers=2, cpu=1.0)
    assert (decision.step, decision.rule) == (0, "at min_replicas")


# ---- CPU, cooldowns, hysteresis -------------------------------------------------------------------

def test_cpu_above_target_adds_a_worker():
    assert step(cpu=70.1).step == +1


def test_a_scale_up_waits_out_the_up_cooldown_since_the_last_scale_up():
    held = step(cpu=90.0, last_up=950.0)
    assert (held.step, held.rule) == (0, "up-cooldown")
    assert "10 s to wait" in held.detail
    assert step(cpu=90.0, last_up=940.0).step == +1


def test_a_scale_up_does_not_wait_for_a_recent_scale_down():
    assert step(cpu=90.0, last_down=999.0).step == +1


def test_cpu_below_half_the_target_removes_a_worker():
    assert step(cpu=34.9).step == -1


def test_between_half_the_target_and_the_target_the_pool_holds():
    for cpu in (35.0, 50.0, 70.0):
        decision = step(cpu=cpu)
        assert (decision.step, decision.rule) == (0, "CPU within band")


def test_a_scale_down_waits_out_the_down_cooldown_since_any_scaling():
    after_down = step(cpu=5.0, last_down=800.0)
    after_up = step(cpu=5.0, last_up=800.0, last_down=100.0)
    assert (after_down.step, after_down.rule) == (0, "down-cooldown")
    assert (after_up.step, after_up.rule) == (0, "down-cooldown")
    assert step(cpu=5.0, last_up=700.0, last_down=650.0).step == -1


def test_no_cpu_reports_hold_the_pool():
    decision = step(cpu=None)
    assert (decision.step, decision.rule) == (0, "no CPU reports")


# ---- a new deployment's starting count ------------------------------------------------------------

def test_a_new_deployment_moves_the_pool_to_its_starting_count_without_waiting_for_cooldowns():
    assert step(workers=2, cpu=1.0, starting=4, last_up=999.0).step == +1
    assert step(workers=4, cpu=99.0, starting=2, last_down=999.0).step == -1
    reached = step(workers=3, cpu=90.0, starting=3)
    assert (reached.step, reached.rule) == (+1, "CPU above target")


def test_a_starting_count_outside_the_bounds_stops_at_them():
    assert step(workers=5, cpu=90.0, starting=9).rule == "at max_replicas"
    assert step(workers=2, cpu=1.0, starting=1).rule == "at min_replicas"


# ---- the pool's CPU -------------------------------------------------------------------------------

def report(replica, cpu, *, at="2025-01-01T00:00:02+00:00", healthy=True):
    return {"replica": replica, "cpu_percent": cpu, "healthy": healthy, "reported_at": at}


def test_pool_cpu_is_the_mean_over_the_pools_healthy_workers_counting_each_once():
    endpoints = [
        {"replicas": [report("h:1", 80.0), report("h:2", 40.0), report("h:3", 500.0, healthy=False)]},
        # h:1 reported on a second endpoint before: its newest report counts, once.
        {"replicas": [report("h:1", 10.0, at="2025-01-01T00:00:01+00:00"), report("other:1", 500.0),
                      report("h:4", None)]},
    ]
    assert pool_cpu(endpoints, {"h:1", "h:2", "h:3", "h:4"}) == 60.0
    assert pool_cpu(endpoints, {"h:9"}) is None


# ---- the loop's memory ----------------------------------------------------------------------------

class FakePool:
    def __init__(self, workers):
        self.workers, self.master_pid = workers, 0

    def replicas(self):
        return {f"h:{n}" for n in range(self.workers)}

    def apply(self, step):
        self.workers += step


def endpoint(deployment_id, cpu, **config):
    return {"live_deployment_id": deployment_id, "scaling_config": scaling(**config),
            "replicas": [report("h:0", cpu)]}


def test_the_loop_takes_each_new_live_deployments_starting_count_once_then_scales_by_cpu():
    starting = {"d1": 3, "d2": 1}
    asked = []

    def starting_count(deployment_id):
        asked.append(deployment_id)
        return starting[deployment_id]

    pool = FakePool(2)
    scaler = Autoscaler(pool, started_with=2, starting_count=starting_count)
    assert scaler.tick([endpoint("d1", 1.0)], now=0.0).rule == "starting count"
    assert pool.workers == 3
    # Reached: low CPU now waits out the down-cooldown from the last scaling.
    assert scaler.tick([endpoint("d1", 1.0)], now=5.0).rule == "down-cooldown"
    assert scaler.tick([endpoint("d1", 1.0)], now=300.0).step == -1
    assert pool.workers == 2
    # d2 replaces d1: its starting count (1) applies at once.
    assert scaler.tick([endpoint("d2", 50.0)], now=301.0).step == -1
    assert pool.workers == 1
    assert asked == ["d1", "d2"]
    # Nothing live any more: back to the size the pool started with.
    assert scaler.tick([{"live_deployment_id": None, "scaling_config": None, "replicas": []}], now=302.0).step == +1
    assert pool.workers == 2


def test_a_starting_count_beyond_min_replicas_is_kept_while_the_pool_first_climbs_into_its_bounds():
    pool = FakePool(1)
    scaler = Autoscaler(pool, started_with=1, starting_count=lambda deployment_id: 4)
    rules = [scaler.tick([endpoint("d1", 1.0, min_replicas=2, max_replicas=5)], now=float(t)).rule for t in range(4)]
    assert rules == ["below min_replicas", "starting count", "starting count", "down-cooldown"]
    assert pool.workers == 4


def test_the_endpoints_are_read_page_by_page():
    pages = {"/api/v1/endpoints?limit=100": {"items": [1, 2], "next_cursor": "c2"},
             "/api/v1/endpoints?limit=100&cursor=c2": {"items": [3], "next_cursor": None}}
    asked = []

    def fetch(path, headers):
        asked.append(headers["Authorization"])
        return 200, pages[path]

    assert read_all(fetch, "t", "/api/v1/endpoints") == [1, 2, 3]
    assert asked == ["Bearer t", "Bearer t"]
