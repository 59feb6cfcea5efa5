"""A/B tests' analysis in monitoring: the started test kept from deployment's events, both arms' predictions and
actuals on the test's endpoint read from the predictions store, every figure as shared.ab_statistics computes it
on the same counts (and scipy for a few), the verdict announced once (abtest.decided), and GET .../results."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats as scipy_stats

from services.monitoring import ab_arms, rollups
from services.monitoring.ab_analysis import due_tests, lock, take_look
from services.monitoring.handlers import ABTestAnalyses
from services.monitoring.ingestion import actual_row, store_actuals, store_predictions
from services.monitoring.service import ABTEST_QUEUE, SWEEP_ABTESTS
from services.monitoring.tables import (
    ABTestAnalysis, ABTestLook, ABTestStaleHour, ABTestUnit, RecordedMetric, StaleHour, VersionBaseline,
)
from shared import ab_statistics as stats
from shared.config import load_settings
from shared.db import utcnow
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.events.outbox import OutboxEvent
from shared.prediction_records import prediction_record
from shared.tasks import task_sender
from tests.conftest import RUN_ID
from tests.support.polling import wait_for
from tests.support.registry import bearer
from tests.support.training import celery_worker, training_settings

pytestmark = pytest.mark.integration

ENDPOINT = "churn-production"
LATENCY = {"name": "latency", "margin": 0.1, "relative": True, "lower_is_better": True}
ERROR_RATE = {"name": "error_rate", "margin": 0.01, "relative": False, "lower_is_better": True}
BUSINESS = {"name": "business_impact", "margin": 0.05, "relative": True, "lower_is_better": False}


@pytest.fixture(scope="module")
def worker_settings(database_url, servers, tmp_path_factory):
    return training_settings(database_url, servers, tmp_path_factory.mktemp("abtest"), RUN_ID)


@pytest.fixture(scope="module")
def worker(worker_settings, tmp_path_factory):
    with celery_worker(worker_settings, tmp_path_factory.mktemp("worker") / "worker.log",
                       pools=("default", ABTEST_QUEUE)) as running:
        yield running


def _event(event_type: str, payload: dict) -> dict:
    return build_envelope(event_type, payload, producer="deployment")


def _start(db, *, started_at: datetime, model_a=None, model_b=None, **overrides) -> dict:
    """The test as abtest.started announces it, handed to monitoring's consumer; its payload."""
    payload = {
        "ab_test_id": uuid.uuid4(), "name": f"churn-{uuid.uuid4().hex[:6]}", "type": "traffic_split",
        "endpoint": ENDPOINT, "model_type": "classification", "model_a_id": model_a or uuid.uuid4(), "version_a": 2,
        "model_b_id": model_b or uuid.uuid4(), "version_b": 1, "traffic_split": 0.5,
        "success_metrics": ["accuracy", "precision", "recall", "f1"],
        "guardrail_metrics": [LATENCY, ERROR_RATE, BUSINESS], "min_sample_size": 500, "max_duration_days": 30,
        "significance_level": 0.05, "mixing_variance": 1e-4, "started_at": started_at, "actor": "erin",
        "actor_id": None, **overrides}
    envelope = _event("abtest.started", payload)
    assert process(db, ABTestAnalyses(), envelope)
    assert not process(db, ABTestAnalyses(), envelope)  # redelivered: nothing more
    return envelope["payload"]


def _arm(rng, *, units: int, accuracy: float, latency: float, errors: int = 0) -> list[dict]:
    """Each unit's two predictions: (unit, prediction, actual, latency, error); the first `errors` fail."""
    rows = []
    for unit in range(units):
        for _ in range(2):
            actual = int(rng.integers(0, 2))
            predicted = actual if rng.random() < accuracy else 1 - actual
            rows.append((f"u{unit}", predicted, actual, abs(float(rng.normal(latency, 3.0))), None))
    return [(unit, None, None, latency_ms, "timed out") if index < errors else (unit, p, a, latency_ms, error)
            for index, (unit, p, a, latency_ms, error) in enumerate(rows)]


def _store(db, test: dict, arm: str, rows: list[dict], *, at: datetime, endpoint: str = ENDPOINT) -> None:
    model, version = (test["model_a_id"], test["version_a"]) if arm == "A" else (test["model_b_id"], test["version_b"])
    records = [prediction_record(model_id=model, version=version, request_id=f"{arm}-{endpoint}-{at:%H%M%S}-{index}",
                                 predicted_at=at + timedelta(seconds=index), endpoint=endpoint,
                                 unit_id=f"{arm}-{unit}", prediction=predicted, actual=actual, latency_ms=latency,
                                 error=error)
               for index, (unit, predicted, actual, latency, error) in enumerate(rows)]
    with db.transaction() as session:
        assert not store_predictions(session=session, records=records, hash_key="").rejected


def _record(db, test: dict, arm: str, values) -> None:
    model, version = (test["model_a_id"], test["version_a"]) if arm == "A" else (test["model_b_id"], test["version_b"])
    with db.transaction() as session:
        session.add_all(RecordedMetric(model_id=uuid.UUID(model), version=version, name="business_impact",
                                       value=float(value), measured_at=utcnow(), ab_test_id=uuid.UUID(test["ab_test_id"]),
                                       arm=arm) for value in values)


def _decided(db, test_id: str) -> list[dict]:
    with db.transaction() as session:
        return [row.envelope for row in session.scalars(sa.select(OutboxEvent).where(
            OutboxEvent.type == "abtest.decided").order_by(OutboxEvent.seq))
            if row.envelope["payload"]["ab_test_id"] == test_id]


def _look_again(db, test_id: str) -> dict:
    with db.transaction() as session:
        return take_look(session, lock(session, uuid.UUID(test_id)), now=utcnow())


def _expected_rates(rows: list[tuple]) -> dict[str, stats.RateArm]:
    pairs = [(p, a) for _, p, a, _, error in rows if error is None]
    true_positive = sum(p == a == 1 for p, a in pairs)
    return {"accuracy": stats.RateArm(len(pairs), sum(p == a for p, a in pairs)),
            "precision": stats.RateArm(sum(p == 1 for p, _ in pairs), true_positive),
            "recall": stats.RateArm(sum(a == 1 for _, a in pairs), true_positive)}


def _expected_f1(rows: list[tuple]) -> stats.MeanArm:
    """f1 as a ratio of per-prediction sums, its variance by the delta method on each prediction's values."""
    pairs = np.array([(p, a) for _, p, a, _, error in rows if error is None])
    tp = ((pairs[:, 0] == 1) & (pairs[:, 1] == 1)).astype(float)
    x, y = 2 * tp, (pairs[:, 0] == 1) + (pairs[:, 1] == 1).astype(float)
    ratio = x.sum() / y.sum()
    psi = (x - ratio * y) / y.mean()
    return stats.MeanArm(len(pairs), ratio, float(np.var(psi, ddof=1)))


def _same(answer: dict, expected: stats.Comparison | dict) -> None:
    """Every figure of `expected` in `answer`, to rounding (the database sums what numpy sums in another order)."""
    for name, value in (expected if isinstance(expected, dict) else expected.as_dict()).items():
        if isinstance(value, dict):
            _same(answer[name], value)
        elif isinstance(value, (float, tuple)):
            assert answer[name] == pytest.approx(value if isinstance(value, float) else list(value), rel=1e-9,
                                                 abs=1e-12), name
        else:
            assert answer[name] == value, name


def test_b_clearly_better_wins_with_every_figure_as_ab_statistics_computes_it(app, client, ds):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=3)
    test = _start(db, started_at=started)
    rng = np.random.default_rng(14)
    a_rows = _arm(rng, units=600, accuracy=0.72, latency=20.0, errors=2)
    b_rows = _arm(rng, units=600, accuracy=0.88, latency=20.0, errors=1)
    # Before the test and on another endpoint: not the test's.
    _store(db, test, "A", _arm(rng, units=50, accuracy=0.1, latency=90.0), at=started - timedelta(hours=1))
    _store(db, test, "B", _arm(rng, units=50, accuracy=0.1, latency=90.0), at=started + timedelta(minutes=5),
           endpoint="churn-staging")
    _store(db, test, "A", a_rows, at=started + timedelta(minutes=10))
    _store(db, test, "B", b_rows, at=started + timedelta(minutes=10))
    impact = {"A": rng.normal(1.0, 0.1, 300), "B": rng.normal(1.03, 0.1, 300)}
    for arm, values in impact.items():
        _record(db, test, arm, values)

    response = client.get(f"/api/v1/ab-tests/{test['ab_test_id']}/results", headers=bearer(app, "viewer"))
    assert response.status_code == 200, response.json
    results = response.json
    assert results["units"] == {"A": 600, "B": 600} and not results["insufficient_data"]
    assert results["window"]["start"] == (started + timedelta(minutes=10)).isoformat()
    srm = stats.sample_ratio_mismatch([600, 600], [0.5, 0.5])
    assert results["srm"] == {**srm.as_dict(), "weights": [0.5, 0.5]} and not results["srm"]["flagged"]
    by_name = {(entry["role"], entry["name"]): entry for entry in results["metrics"]}

    rates_a, rates_b = _expected_rates(a_rows), _expected_rates(b_rows)
    success = [stats.compare(rates_a[name], rates_b[name], alpha=0.05, mixing_variance=1e-4)
               for name in ("accuracy", "precision", "recall")]
    success.append(stats.compare(_expected_f1(a_rows), _expected_f1(b_rows), alpha=0.05, mixing_variance=1e-4))
    for name, expected in zip(("accuracy", "precision", "recall", "f1"), stats.adjust_success_metrics(success)):
        _same(by_name["success", name], expected)
    accuracy = by_name["success", "accuracy"]
    assert accuracy["method"] == "two-proportion z-test" and by_name["success", "f1"]["method"].startswith("Welch")
    # The pooled z-test's p is the uncorrected chi-square test's of the 2x2 table.
    table = [[rates_a["accuracy"].conversions, rates_a["accuracy"].n - rates_a["accuracy"].conversions],
             [rates_b["accuracy"].conversions, rates_b["accuracy"].n - rates_b["accuracy"].conversions]]
    assert accuracy["p_value"] == pytest.approx(scipy_stats.chi2_contingency(table, correction=False)[1], rel=1e-9)

    latencies = {arm: np.array([row[3] for row in rows]) for arm, rows in (("A", a_rows), ("B", b_rows))}
    latency = by_name["guardrail", "latency"]
    welch = scipy_stats.ttest_ind(latencies["B"], latencies["A"], equal_var=False)
    assert latency["statistic"] == pytest.approx(welch.statistic, rel=1e-9)
    assert latency["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    margin = 0.1 * latencies["A"].mean()
    tau = margin ** 2  # a relative margin: that share of A's latency, squared (ab_analysis.py)
    assert latency["margin"] == pytest.approx(margin) and latency["relative_margin"] == 0.1
    _same(latency, stats.compare(stats.MeanArm.from_values(latencies["A"]), stats.MeanArm.from_values(latencies["B"]),
                                 alpha=0.05, mixing_variance=tau, margin=margin, lower_is_better=True))
    assert latency["guardrail"]["pass"] and latency["status"] == "holds"
    errors = by_name["guardrail", "error_rate"]
    assert (errors["estimate_a"], errors["estimate_b"]) == (2 / 1200, 1 / 1200)
    assert errors["guardrail"]["pass"] is None  # too few errors to test: no hold on B
    business = by_name["guardrail", "business_impact"]
    _same(business, stats.compare(*(stats.MeanArm.from_values(impact[arm]) for arm in "AB"), alpha=0.05,
                                  mixing_variance=(0.05 * impact["A"].mean()) ** 2,
                                  margin=0.05 * impact["A"].mean()))

    decision = results["decision"]
    assert decision["verdict"] == "b_wins" and decision["summary"].startswith("B wins: accuracy")
    [decided] = _decided(db, test["ab_test_id"])
    assert decided["payload"]["verdict"] == "b_wins" and decided["payload"]["summary"] == decision["summary"]
    # The latest look answers while fresh; a look taken anyway announces nothing again.
    assert client.get(f"/api/v1/ab-tests/{test['ab_test_id']}/results", headers=bearer(app, "viewer")).json == results
    assert _look_again(db, test["ab_test_id"])["decision"] == decision
    assert len(_decided(db, test["ab_test_id"])) == 1


def test_before_any_traffic_the_results_have_no_figures_and_an_unknown_test_is_not_found(app, client):
    db = app.extensions["modelyard"].db
    test = _start(db, started_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    # A's traffic alone, before B's arm took any: not yet the test's.
    _store(db, test, "A", _arm(np.random.default_rng(1), units=20, accuracy=0.8, latency=10.0),
           at=datetime.now(timezone.utc) - timedelta(minutes=4))
    viewer = bearer(app, "viewer")
    response = client.get(f"/api/v1/ab-tests/{test['ab_test_id']}/results", headers=viewer)
    assert response.status_code == 200, response.json
    results = response.json
    assert results["insufficient_data"] and results["units"] == {"A": 0, "B": 0}
    assert results["window"]["start"] is None and results["decision"] is None
    assert results["srm"]["p_value"] is None and results["srm"]["reason"] == "no units assigned yet"
    for entry in results["metrics"]:
        assert entry["insufficient_data"] and entry["p_value"] is None and entry["p_value_sequential"] is None, entry
        assert entry["reasons"]["p_value"] == "an arm has no units yet"
    assert client.get(f"/api/v1/ab-tests/{uuid.uuid4()}/results", headers=viewer).status_code == 404
    assert client.get(f"/api/v1/ab-tests/{test['ab_test_id']}/results").status_code == 401


@pytest.mark.parametrize("same_model", [True, False], ids=["two-versions", "two-models"])
def test_a_shadow_tests_b_is_judged_on_copies_of_as_requests_against_the_actuals_recorded_for_a(app, client,
                                                                                                 same_model):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=2)
    model_a = uuid.uuid4()
    test = _start(db, started_at=started, type="shadow", traffic_split=1.0, model_a=model_a,
                  model_b=model_a if same_model else None, success_metrics=["accuracy"], guardrail_metrics=[],
                  min_sample_size=100)
    rng = np.random.default_rng(7)
    actuals = rng.integers(0, 2, 400)
    answers = {"A": np.where(rng.random(400) < 0.7, actuals, 1 - actuals),
               "B": np.where(rng.random(400) < 0.9, actuals, 1 - actuals)}
    # B's records are copies of A's requests (serving's mirror): the same ids, units and times; the
    # outcomes come in for model A alone, as its users saw only A's answers.
    records = [prediction_record(model_id=test[f"model_{arm.lower()}_id"], version=test[f"version_{arm.lower()}"],
                                 request_id=f"r{index}", unit_id=f"u{index}", endpoint=ENDPOINT,
                                 predicted_at=started + timedelta(minutes=10, seconds=index),
                                 prediction=int(answers[arm][index]), latency_ms=10.0,
                                 actual=int(actual) if arm == "A" else None)
               for arm in "AB" for index, actual in enumerate(actuals)]
    with db.transaction() as session:
        stored = store_predictions(session=session, records=records, hash_key="")
    assert (stored.stored, stored.duplicates) == (800, 0)  # one request id, one row per version

    results = client.get(f"/api/v1/ab-tests/{test['ab_test_id']}/results", headers=bearer(app, "viewer")).json
    assert results["units"] == {"A": 400, "B": 400}
    assert results["srm"]["weights"] == [0.5, 0.5] and not results["srm"]["flagged"]
    [accuracy] = [entry for entry in results["metrics"] if entry["name"] == "accuracy"]
    correct = {arm: int((answers[arm] == actuals).sum()) for arm in "AB"}
    [expected] = stats.adjust_success_metrics([stats.compare(
        stats.RateArm(400, correct["A"]), stats.RateArm(400, correct["B"]), alpha=0.05, mixing_variance=1e-4)])
    _same(accuracy, expected)


def test_a_60_40_realisation_of_a_50_50_split_is_a_sample_ratio_mismatch(app):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    test = _start(db, started_at=started, min_sample_size=300, guardrail_metrics=[])
    rng = np.random.default_rng(2)
    _store(db, test, "A", _arm(rng, units=600, accuracy=0.8, latency=10.0), at=started + timedelta(minutes=1))
    _store(db, test, "B", _arm(rng, units=400, accuracy=0.8, latency=10.0), at=started + timedelta(minutes=1))
    results = _look_again(db, test["ab_test_id"])
    expected = stats.sample_ratio_mismatch([600, 400], [0.5, 0.5])
    assert results["srm"]["flagged"] and results["srm"]["chi2"] == pytest.approx(expected.chi2)
    assert results["srm"]["p_value"] == pytest.approx(scipy_stats.chisquare([600, 400]).pvalue, rel=1e-9)
    assert results["decision"]["verdict"] == "invalid" and "sample ratio mismatch" in results["decision"]["summary"]
    assert [event["payload"]["verdict"] for event in _decided(db, test["ab_test_id"])] == ["invalid"]


def test_b_much_slower_breaches_the_latency_guardrail_and_the_test_is_invalid(app):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    test = _start(db, started_at=started, guardrail_metrics=[LATENCY, ERROR_RATE])
    rng = np.random.default_rng(3)
    _store(db, test, "A", _arm(rng, units=600, accuracy=0.8, latency=20.0), at=started + timedelta(minutes=1))
    _store(db, test, "B", _arm(rng, units=600, accuracy=0.8, latency=40.0), at=started + timedelta(minutes=1))
    results = _look_again(db, test["ab_test_id"])
    latency = next(entry for entry in results["metrics"] if entry["name"] == "latency")
    assert latency["status"] == "breached" and latency["guardrail"]["pass"] is False
    assert latency["ci_sequential"][0] > latency["margin"]
    assert results["decision"]["verdict"] == "invalid"
    assert "breached the latency guardrail" in results["decision"]["summary"]


def test_the_sequential_figures_carry_from_look_to_look_and_a_stopped_test_is_looked_at_no_more(app):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=2)
    test = _start(db, started_at=started, success_metrics=["accuracy"], guardrail_metrics=[], min_sample_size=10**6)
    rng = np.random.default_rng(4)
    _store(db, test, "A", _arm(rng, units=400, accuracy=0.65, latency=10.0), at=started + timedelta(minutes=1))
    _store(db, test, "B", _arm(rng, units=400, accuracy=0.85, latency=10.0), at=started + timedelta(minutes=1))
    first = _look_again(db, test["ab_test_id"])["metrics"][0]
    # Then the arms do alike for a while: the running minimum and the intersection of the intervals stay.
    _store(db, test, "A", _arm(rng, units=400, accuracy=0.75, latency=10.0), at=started + timedelta(minutes=30))
    _store(db, test, "B", _arm(rng, units=400, accuracy=0.75, latency=10.0), at=started + timedelta(minutes=30))
    second = _look_again(db, test["ab_test_id"])["metrics"][0]
    assert second["n_a"] == 2 * first["n_a"]
    assert second["p_value_sequential"] == first["p_value_sequential"] < 0.05
    assert first["ci_sequential"][0] <= second["ci_sequential"][0] and second["ci_sequential"][1] <= first["ci_sequential"][1]
    assert second["p_value"] > first["p_value"]  # the fixed-horizon figure sees only the data now

    assert process(db, ABTestAnalyses(), _event("abtest.stopped", {"ab_test_id": test["ab_test_id"], "name": test["name"],
                                                                  "actor": "erin"}))
    test_id = uuid.UUID(test["ab_test_id"])
    with db.transaction() as session:
        assert test_id in due_tests(session)  # its last look, which closes its window, is still to take
        ended_at = session.get(ABTestAnalysis, test_id).ended_at
    # Predictions after the end are not the test's (the endpoint serves A alone again).
    _store(db, test, "A", _arm(rng, units=50, accuracy=0.75, latency=10.0), at=datetime.now(timezone.utc))
    last = _look_again(db, test["ab_test_id"])
    assert last["metrics"][0]["n_a"] == second["n_a"] and last["decision"] is None
    with db.transaction() as session:
        assert test_id not in due_tests(session)
        row = session.get(ABTestAnalysis, test_id)
        assert row.verdict is None and row.computed_until is None
        assert last["window"]["end"] == ab_arms.utc(ended_at).isoformat()
        # What was kept for the next look is gone; the looks stay.
        assert not session.scalar(sa.select(sa.func.count()).select_from(ABTestUnit).where(ABTestUnit.ab_test_id == test_id))
        assert session.scalar(sa.select(sa.func.count()).select_from(ABTestLook)
                              .where(ABTestLook.ab_test_id == test_id)) == 3


def test_a_test_the_deployment_service_concluded_itself_shows_its_verdict_and_announces_none(app, client):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    test = _start(db, started_at=started)
    rng = np.random.default_rng(9)
    _store(db, test, "A", _arm(rng, units=40, accuracy=0.8, latency=10.0), at=started + timedelta(minutes=1))
    _store(db, test, "B", _arm(rng, units=40, accuracy=0.8, latency=10.0), at=started + timedelta(minutes=1))
    summary = "Version 1 of model B left the endpoint: its health check failed."
    assert process(db, ABTestAnalyses(), _event("abtest.concluded", {
        "ab_test_id": test["ab_test_id"], "name": test["name"], "verdict": "invalid", "summary": summary,
        "model_a_id": test["model_a_id"], "version_a": 2, "model_b_id": test["model_b_id"], "version_b": 1}))
    results = client.get(f"/api/v1/ab-tests/{test['ab_test_id']}/results", headers=bearer(app, "viewer")).json
    assert results["decision"] == {"verdict": "invalid", "summary": summary} and results["units"] == {"A": 40, "B": 40}
    assert not _decided(db, test["ab_test_id"])


def _figures(results: dict) -> dict:
    """What a look reads from the predictions (not what it carries from the looks before)."""
    return {"units": results["units"], "srm": results["srm"],
            "metrics": [{name: entry[name] for name in ("name", "n_a", "n_b", "estimate_a", "estimate_b", "p_value",
                                                         "ci", "statistic")} for entry in results["metrics"]]}


@pytest.mark.parametrize("refreshed", [False, True], ids=["marks-pending", "marks-refreshed"])
def test_a_look_reads_only_the_hours_that_changed_yet_counts_late_predictions_and_actuals(app, refreshed):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=5)
    test = _start(db, started_at=started, success_metrics=["accuracy", "f1"], guardrail_metrics=[LATENCY],
                  min_sample_size=10**6)
    with db.transaction() as session:  # the models' types, which the tallies' refresh needs
        session.add_all(VersionBaseline(model_id=uuid.UUID(test[f"model_{arm}_id"]), version=test[f"version_{arm}"],
                                        model_type="classification") for arm in "ab")
    rng = np.random.default_rng(8)
    early = {arm: [(unit, p, None, latency, error) for unit, p, _, latency, error
                   in _arm(rng, units=200, accuracy=0.8, latency=15.0)] for arm in "AB"}
    for arm, rows in early.items():  # three hours ago, their actuals unknown yet
        _store(db, test, arm, rows, at=started + timedelta(hours=2))
    _look_again(db, test["ab_test_id"])
    # Then: the early predictions' actuals, a late batch of the first hour, and the last hour's traffic.
    with db.transaction() as session:
        store_actuals(session, [actual_row({"model_id": test[f"model_{arm.lower()}_id"],
                                            "request_id": f"{arm}-{ENDPOINT}-{started + timedelta(hours=2):%H%M%S}-{i}",
                                            "actual": int(rng.integers(0, 2))}, received_at=utcnow())
                                for arm in "AB" for i in range(0, 400, 3)])
    for arm in "AB":  # the late batch by units seen before, the last hour's by new ones
        _store(db, test, arm, _arm(rng, units=30, accuracy=0.7, latency=12.0), at=started + timedelta(hours=2, minutes=30))
        _store(db, test, arm, [(f"new-{unit}", *rest) for unit, *rest in _arm(rng, units=100, accuracy=0.9, latency=14.0)],
               at=datetime.now(timezone.utc) - timedelta(minutes=20))
    if refreshed:
        with db.transaction() as session:
            assert rollups.refresh(session, hours=100)  # the marks handed on to the test
            assert not session.scalar(sa.select(sa.func.count()).select_from(StaleHour))
            assert session.scalar(sa.select(sa.func.count()).select_from(ABTestStaleHour))
    second = _look_again(db, test["ab_test_id"])
    with db.transaction() as session:  # the same window computed whole again
        row = lock(session, uuid.UUID(test["ab_test_id"]))
        row.computed_until = None
        whole = take_look(session, row, now=datetime.fromisoformat(second["window"]["end"]))
    assert _figures(second) == _figures(whole)
    assert second["units"] == {"A": 300, "B": 300}
    assert second["metrics"][0]["n_a"] == len(range(0, 400, 3)) + 60 + 200


def _looks(db, test_id: str) -> list[ABTestLook]:
    with db.transaction() as session:
        return list(session.scalars(sa.select(ABTestLook).where(ABTestLook.ab_test_id == uuid.UUID(test_id))))


def test_beats_sweep_has_the_abtest_pool_look_at_each_running_test_until_it_is_decided(app, worker, worker_settings):
    db = app.extensions["modelyard"].db
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    decisive = _start(db, started_at=started, guardrail_metrics=[])
    rng = np.random.default_rng(7)
    _store(db, decisive, "A", _arm(rng, units=600, accuracy=0.70, latency=20.0), at=started + timedelta(minutes=1))
    _store(db, decisive, "B", _arm(rng, units=600, accuracy=0.90, latency=20.0), at=started + timedelta(minutes=1))
    waiting = _start(db, started_at=started)  # no traffic yet
    stopped = _start(db, started_at=started)
    assert process(db, ABTestAnalyses(), _event("abtest.stopped", {"ab_test_id": stopped["ab_test_id"],
                                                                  "name": stopped["name"], "actor": "erin"}))
    loaded = load_settings(worker_settings)
    sender = task_sender(loaded)

    sender.send_task(SWEEP_ABTESTS, queue=loaded.task_queue("default"))
    wait_for(lambda: _looks(db, decisive["ab_test_id"]) and _looks(db, waiting["ab_test_id"]), timeout=60,
             what="both running tests looked at")
    assert [event["payload"]["verdict"] for event in _decided(db, decisive["ab_test_id"])] == ["b_wins"]
    assert _looks(db, waiting["ab_test_id"])[0].results["insufficient_data"] and not _looks(db, stopped["ab_test_id"])

    sender.send_task(SWEEP_ABTESTS, queue=loaded.task_queue("default"))
    wait_for(lambda: len(_looks(db, waiting["ab_test_id"])) == 2, timeout=60, what="the undecided test's second look")
    assert len(_looks(db, decisive["ab_test_id"])) == 1  # decided: looked at no more
