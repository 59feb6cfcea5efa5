"""How serving splits an endpoint's traffic: units placed by a hash salted with the traffic's salt (an A/B
test's id), sticky and in proportion at any split to the hundredth of a percent, drawn afresh under a
new salt; and each prediction recorded under the model of the deployment that answered it."""

from __future__ import annotations

import math
import threading
import uuid

import pytest
from prometheus_client import CollectorRegistry

from services.serving import predictions
from services.serving.mirror import Mirror
from services.serving.replica import Route, bucket, choose, parse_desired
from services.serving.window import ServingStats

UNITS = [f"user-{n}" for n in range(10_000)]
SALT = "3f0c7d4e-5b7a-4d7e-9a51-0c2f5e1b8a90"


def arms(salt: str, b_weight: float) -> dict[str, str]:
    """Each unit's arm when B (listed first, as a candidate is) takes `b_weight` percent."""
    routes = (Route("b", 3, b_weight), Route("a", 3, round(100 - b_weight, 2)))
    return {unit: choose(routes, bucket(salt, unit)).deployment_id for unit in UNITS}


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("b_weight", [0.5, 30.0])
def test_a_salted_split_sends_each_arm_its_share_of_units(b_weight):
    placed = arms(SALT, b_weight)
    in_b = sum(arm == "b" for arm in placed.values())
    assert within_binomial(in_b, len(UNITS), b_weight / 100), in_b
    assert placed == arms(SALT, b_weight)  # the same unit always meets the same arm


def test_a_unit_keeps_its_arm_as_the_split_grows_and_a_new_salt_draws_the_units_afresh():
    small, large = arms(SALT, 0.5), arms(SALT, 30.0)
    assert all(large[unit] == "b" for unit, arm in small.items() if arm == "b")
    other = arms(str(uuid.UUID(int=1)), 30.0)
    both = sum(large[unit] == "b" and other[unit] == "b" for unit in UNITS)
    # Independent draws: about 30% of the 30% again, not the same 3,000 units.
    assert within_binomial(both, len(UNITS), 0.3 * 0.3), both
    unsalted = {unit: choose((Route("b", 3, 30.0), Route("a", 3, 70.0)), bucket("churn-production", unit)).deployment_id
                for unit in UNITS}
    assert within_binomial(sum(large[u] == "b" and unsalted[u] == "b" for u in UNITS), len(UNITS), 0.09)


def test_shares_in_hundredths_add_up_to_exactly_their_slots():
    # Of the 10,000 points a bucket takes, 0.1 + 0.2 holds 3,000 for the first two routes, not one more.
    routes = (Route("x", 1, 0.1), Route("y", 2, 0.2), Route("z", 3, 99.7))
    points = [slot / 100 for slot in range(10_000)]
    assert [sum(choose(routes, p).deployment_id == name for p in points) for name in "xyz"] == [10, 20, 9970]


def test_the_desired_state_carries_each_changes_salt_and_each_deployments_model():
    endpoint_model, other_model = str(uuid.uuid4()), str(uuid.uuid4())
    desired = parse_desired({
        "endpoint": "churn-production", "model_id": endpoint_model, "now": "2026-01-01T10:00:00+00:00",
        "changes": [
            {"effective_at": "2026-01-01T09:00:00+00:00",
             "routes": [{"deployment_id": "a", "version": 1, "weight": 100}]},
            {"effective_at": "2026-01-01T10:00:00+00:00", "salt": SALT,
             "routes": [{"deployment_id": "b", "version": 1, "weight": 0.5},
                        {"deployment_id": "a", "version": 1, "weight": 99.5}]}],
        # A control plane from before per-deployment model ids names none: the endpoint's model's.
        "deployments": {"a": {"version": 1, "artifact_sha256": "0" * 64},
                        "b": {"model_id": other_model, "version": 1, "artifact_sha256": "1" * 64}},
    })
    before, after = desired.changes
    assert desired.in_effect(before.effective_at + 1) == before and before.salt is None
    assert desired.in_effect(after.effective_at) == after and after.salt == SALT
    assert [route.weight for route in after.routes] == [0.5, 99.5]
    assert desired.in_effect(before.effective_at - 1) is None
    assert (desired.deployments["a"]["model_id"], desired.deployments["b"]["model_id"]) == (endpoint_model, other_model)


class _Model:
    features, kinds, nullable = ["x"], {"x": "numeric"}, frozenset()

    def __init__(self, answer):
        self.answer = answer

    def predict(self, rows):
        return [self.answer] * len(rows), None


class _Failing(_Model):
    def predict(self, rows):
        raise RuntimeError("out of memory")


class _Replica:
    def __init__(self, desired, failing=()):
        self._desired, self._failing = desired, failing

    def desired(self, endpoint):
        return self._desired

    def model(self, deployment):
        return (_Failing if deployment["version"] in self._failing else _Model)(deployment["version"] * 10)


class _Log:
    def __init__(self):
        self.records = []

    def add(self, records):
        self.records.extend(records)


def test_a_prediction_is_answered_and_recorded_as_the_deployment_its_unit_meets():
    old_model, new_model = str(uuid.uuid4()), str(uuid.uuid4())
    desired = parse_desired({
        "endpoint": "churn-production", "model_id": old_model, "now": "2026-01-01T10:00:00+00:00",
        "changes": [{"effective_at": "2026-01-01T10:00:00+00:00", "salt": SALT,
                     "routes": [{"deployment_id": "b", "version": 1, "weight": 30.0},
                                {"deployment_id": "a", "version": 1, "weight": 70.0}]}],
        "deployments": {"a": {"model_id": old_model, "version": 1, "artifact_sha256": "0" * 64},
                        "b": {"model_id": new_model, "version": 1, "artifact_sha256": "1" * 64}},
    })
    placed = arms(SALT, 30.0)
    log, stats = _Log(), ServingStats(CollectorRegistry())
    units = UNITS[:200]
    for unit in units:
        answer = predictions.predict(replica=_Replica(desired), stats=stats, prediction_log=log, mirror=Mirror(),
                                     endpoint="churn-production", body={"instances": [{"x": 1.0}], "unit_id": unit},
                                     max_rows=10)
        assert answer["model_id"] == (new_model if placed[unit] == "b" else old_model), unit
    assert [(r["model_id"], r["deployment_id"]) for r in log.records] == \
        [(new_model, "b") if placed[unit] == "b" else (old_model, "a") for unit in units]
    # Both are version 1: the replica's window tells them apart by deployment.
    window = stats.window("churn-production")
    assert {key: (numbers["version"], numbers["requests"]) for key, numbers in window.items()} == {
        "a": (1, sum(placed[u] == "a" for u in units)), "b": (1, sum(placed[u] == "b" for u in units))}


def _shadowed(a_model, b_model):
    return parse_desired({
        "endpoint": "churn-production", "model_id": a_model, "now": "2026-01-01T10:00:00+00:00",
        "changes": [{"effective_at": "2026-01-01T10:00:00+00:00", "salt": SALT,
                     "routes": [{"deployment_id": "a", "version": 1, "weight": 100.0},
                                {"deployment_id": "b", "version": 2, "weight": 100.0, "shadow": True}]}],
        "deployments": {"a": {"model_id": a_model, "version": 1, "artifact_sha256": "0" * 64},
                        "b": {"model_id": b_model, "version": 2, "artifact_sha256": "1" * 64}},
    })


def test_a_shadow_version_answers_a_copy_of_every_request_recorded_beside_the_answer_never_returned():
    model = str(uuid.uuid4())
    log, stats, mirror = _Log(), ServingStats(CollectorRegistry()), Mirror()
    answers = [predictions.predict(replica=_Replica(_shadowed(model, model)), stats=stats, prediction_log=log,
                                   mirror=mirror, endpoint="churn-production",
                                   body={"instances": [{"x": 1.0}, {"x": 2.0}], "unit_id": unit, "request_id": unit},
                                   max_rows=10)
               for unit in UNITS[:50]]
    mirror.close()  # runs what is queued
    assert {(a["model_version"], tuple(a["predictions"])) for a in answers} == {(1, (10, 10))}
    by_version = {version: [r for r in log.records if r["version"] == version] for version in (1, 2)}
    assert [r["prediction"] for r in by_version[2]] == [20] * 100
    # The copy is the same request: its ids, unit, rows and time; only the version and deployment differ.
    same = ("request_id", "unit_id", "features", "predicted_at", "model_id")
    assert [{k: r[k] for k in same} for r in by_version[2]] == [{k: r[k] for k in same} for r in by_version[1]]
    assert {r["deployment_id"] for r in by_version[2]} == {"b"}
    assert {key: numbers["requests"] for key, numbers in stats.window("churn-production").items()} == \
        {"a": 50, "b": 50}


def test_a_failing_shadow_is_recorded_as_failed_predictions_and_its_client_never_notices():
    a_model, b_model = str(uuid.uuid4()), str(uuid.uuid4())
    log, stats, mirror = _Log(), ServingStats(CollectorRegistry()), Mirror()
    answer = predictions.predict(replica=_Replica(_shadowed(a_model, b_model), failing={2}), stats=stats,
                                 prediction_log=log, mirror=mirror, endpoint="churn-production",
                                 body={"instances": [{"x": 1.0}], "unit_id": "u-1", "request_id": "r-1"}, max_rows=10)
    mirror.close()
    assert answer["predictions"] == [10]
    failed = [r for r in log.records if r["model_id"] == b_model]
    assert [(r["request_id"], r["prediction"], r["error"]) for r in failed] == \
        [("r-1", None, "Prediction failed: Version 2 failed to predict: RuntimeError: out of memory")]
    assert stats.window("churn-production")["b"]["errors"] == 1


def test_the_mirror_drops_and_counts_copies_when_its_queue_is_full_and_never_blocks():
    registry = CollectorRegistry()
    mirror, started, release = Mirror(capacity=1, registry=registry), threading.Event(), threading.Event()
    mirror.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    ran = []
    mirror.submit(lambda: ran.append(1))  # queued
    mirror.submit(lambda: ran.append(2))  # no room: dropped
    release.set()
    mirror.close()
    assert (ran, mirror.dropped) == ([1], 1)
    assert registry.get_sample_value("modelyard_shadow_dropped_requests_total") == 1
