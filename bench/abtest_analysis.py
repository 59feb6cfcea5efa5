"""A scheduled round of A/B analyses (issue 14: 100 running tests of 1,000,000 predictions each in under 60 s on 2
workers), measured on fewer tests and extrapolated.

A fresh database (dropped at the start of a run, left afterwards for inspection), migrated. Each of `tests` tests
is a model of its own with versions 1 (A) and 2 (B) on an endpoint of its own, split 50/50 by unit, started 14
days ago with the brief's example 4 (accuracy, precision, recall and f1 to win on; latency, error rate and a
recorded business_impact as guardrails). Its `predictions` are made by Postgres (INSERT ... SELECT over
generate_series, as bench/monitoring_performance.py does), evenly over the 14 days: each prediction's unit, arm,
label, actual (half of them have one; B right 80.1% of the time, A 80.0%: too close for a verdict, so that every
test stays running), latency and failure (0.1%) follow from its number n; a business_impact value per 100. The
models' versions and the tests reach monitoring through its consumers (VersionBaselines, ABTestAnalyses) as
built envelopes; the stored rows' hours are marked stale, as storing predictions marks them (stale.py), and
tallied by rollups.refresh, as beat does every minute (untimed: the tallies, not the analysis).

Then, on 2 processes (a multiprocessing pool, each with its own engine, each look as workers/abtest.analyse takes
it: the row locked, ab_analysis.take_look, one transaction):
  - the catch-up round: every test's first look, which computes its whole window;
  - ROUNDS steady rounds, each after 5 minutes of new traffic per test (predictions / 14 days' worth) and some
    late actuals of two old hours (a day and a week ago), marked stale and refreshed as beat would: a look then
    reads the hours that changed (ab_hours.py).
Each round is timed from beat's sweep (ab_analysis.due_tests) to the last look committed. Printed: each look's
time, this process's and its Postgres backend's CPU, the round's wall time, the machine's CPU and load average,
and the extrapolation to 100 tests on 2 processes (steady round x 100 / tests).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import psycopg
import sqlalchemy as sa

from bench.monitoring_performance import day_partitions
from services.monitoring import ab_analysis, rollups
from services.monitoring.handlers import ab_test_analyses, version_baselines
from shared.db import Database, utcnow
from shared.events.catalogue import build_envelope
from shared.events.consumer import process
from shared.migrate import migrate

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DAYS = 14
PROCESSES = 2
ROUNDS = 3
STEADY_MINUTES = 5
PREDICTIONS_PER_UNIT = 5
LATE_HOURS_AGO = (24, 24 * 7)  # the hours whose predictions get late actuals each steady round
LATE_ACTUALS = 25  # per hour, test and round
CHUNK = 1_000_000
TARGET_TESTS, TARGET_SECONDS = 100, 60

# Prediction n of a test: its unit (a multiplicative hash, so that a unit's ~5 predictions spread over the 14
# days), its arm by its unit, its label, and whether its actual agrees (more often in B), each from a hash of its
# own seed (a draw in [0, 1000)), so that none of them follows from another; the seeds differ from test to test.
_UNIT = "(n * 2654435761) %% %(units)s"
_IN_B = f"abs(hashint8extended({_UNIT}, %(seed)s) %% 1000) < 500"
_LABEL = "(abs(hashint8extended(n, %(seed)s + 1) %% 1000) >= 500)::int"
_ACTUAL = (f"to_jsonb(CASE WHEN abs(hashint8extended(n, %(seed)s + 2) %% 1000) < CASE WHEN {_IN_B} THEN 801 "
           f"ELSE 800 END THEN {_LABEL} ELSE 1 - {_LABEL} END)")
_AT = "%(end)s - (%(final)s - n) * %(step)s * interval '1 microsecond'"
_NUMBERS = "generate_series(%(first)s::bigint, %(last)s::bigint) AS n"
_FAILED = "n %% 1000 = 7"

_PREDICTIONS = f"""
INSERT INTO predictions (id, day, model_id, version, endpoint, request_id, unit_id, prediction, latency_ms, error,
                         predicted_at, received_at)
SELECT gen_random_uuid(), (t AT TIME ZONE 'UTC')::date, %(model)s, CASE WHEN b THEN 2 ELSE 1 END, %(endpoint)s,
       'r' || n, 'u' || ({_UNIT}), CASE WHEN NOT {_FAILED} THEN to_jsonb({_LABEL}) END, 2 + random() * 20,
       CASE WHEN {_FAILED} THEN 'timed out' END, t, t
FROM (SELECT n, {_IN_B} AS b, {_AT} AS t FROM {_NUMBERS}) AS made
"""
_ACTUALS = f"""
INSERT INTO actuals (model_id, request_id, actual, recorded_at)
SELECT %(model)s, 'r' || n, {_ACTUAL}, now() FROM {{numbers}}
ON CONFLICT DO NOTHING
"""
_METRICS = f"""
INSERT INTO recorded_metrics (id, model_id, version, name, value, measured_at, ab_test_id, arm, recorded_at)
SELECT gen_random_uuid(), %(model)s, CASE WHEN {_IN_B} THEN 2 ELSE 1 END, 'business_impact', 10 + random() * 5,
       {_AT}, %(test)s, CASE WHEN {_IN_B} THEN 'B' ELSE 'A' END, now()
FROM {_NUMBERS} WHERE n %% 100 = 0
"""
# The hours of the predictions stored or joined by actuals, as stale.py marks them when either is stored.
_STALE = """
INSERT INTO stale_hours (model_id, hour)
SELECT DISTINCT model_id, date_trunc('hour', predicted_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
FROM predictions WHERE model_id = %(model)s AND {which}
"""


class Test:
    """One seeded test: its model, endpoint and id, and how many predictions it has so far."""

    def __init__(self, index: int, predictions: int):
        self.index, self.model_id, self.test_id = index, uuid.uuid4(), uuid.uuid4()
        self.endpoint, self.units = f"abbench-{index}", predictions // PREDICTIONS_PER_UNIT
        self.seeded, self.made = predictions, 0  # seeded: the first predictions, spread over DAYS

    def values(self, **more) -> dict:
        return {"model": self.model_id, "test": self.test_id, "endpoint": self.endpoint, "units": self.units,
                "seed": self.index * 3, **more}


def _add(conn: psycopg.Connection, test: Test, count: int, *, end: datetime, seconds: float) -> range:
    """`count` more predictions of the test ending at `end` over `seconds`, their actuals and recorded metrics;
    their numbers' range."""
    final, step = test.made + count - 1, seconds * 1e6 / count
    for first in range(test.made, test.made + count, CHUNK):
        values = test.values(first=first, last=min(final, first + CHUNK - 1), final=final, end=end, step=step)
        conn.execute(_PREDICTIONS, values)
        conn.execute(_ACTUALS.format(numbers=_NUMBERS + " WHERE n %% 2 = 0"), values)
        conn.execute(_METRICS, values)
    test.made += count
    return range(final + 1 - count, final + 1)


def _late_actuals(conn: psycopg.Connection, test: Test, round_: int) -> list[str]:
    """Actuals for predictions of the hours LATE_HOURS_AGO that had none (odd numbers); their request ids."""
    step = DAYS * 86400 / test.seeded
    numbers = []
    for hours in LATE_HOURS_AGO:
        around = test.seeded - 1 - int(hours * 3600 / step)
        numbers += [around + 2 * (round_ * LATE_ACTUALS + k) + 1 - around % 2 for k in range(LATE_ACTUALS)]
    conn.execute(_ACTUALS.format(numbers="unnest(%(numbers)s::bigint[]) AS n"), test.values(numbers=numbers))
    return [f"r{n}" for n in numbers]


def _partitions(db: Database, today) -> None:
    """Day partitions for the window, as beat's upkeep makes them for days with rows (partitions.keep_days)."""
    with db.transaction() as session:
        day_partitions(session, today, DAYS + 2)


def _announce(db: Database, test: Test, started_at: datetime) -> None:
    """The model's two versions and the test, through monitoring's consumers, as deployment and the registry
    announce them."""
    for version in (1, 2):
        process(db, version_baselines(), build_envelope("model_version.registered", {
            "model_id": test.model_id, "version": version, "artifact_sha256": "0" * 64, "actor": "bench",
            "model_type": "classification"}, producer="registry"))
    process(db, ab_test_analyses(), build_envelope("abtest.started", {
        "ab_test_id": test.test_id, "name": f"churn-comparison-{test.index}", "type": "traffic_split",
        "endpoint": test.endpoint, "model_type": "classification", "model_a_id": test.model_id, "version_a": 1,
        "model_b_id": test.model_id, "version_b": 2, "traffic_split": 0.5,
        "success_metrics": ["accuracy", "precision", "recall", "f1"],
        "guardrail_metrics": [{"name": "latency", "margin": 0.1, "relative": True, "lower_is_better": True},
                              {"name": "error_rate", "margin": 0.01, "relative": False, "lower_is_better": True},
                              {"name": "business_impact", "margin": 0.05, "relative": True, "lower_is_better": False}],
        "min_sample_size": 5000, "max_duration_days": 30, "significance_level": 0.05, "mixing_variance": 1e-4,
        "minimum_detectable_effect": None, "started_at": started_at, "actor": "bench", "actor_id": None},
        producer="deployment"))


def _refresh(db: Database) -> tuple[int, float]:
    """Every stale hour tallied, as beat's refresh does (and the tests' hours marked changed); hours, seconds."""
    began, hours = time.monotonic(), 0
    while True:
        with db.transaction() as session:
            done = rollups.refresh(session, hours=200)
        hours += done
        if not done:
            return hours, time.monotonic() - began


# ---- the pool ----------------------------------------------------------------------------------------------------

_db: Database | None = None


def _open(url: str) -> None:
    global _db
    _db = Database(url)


def _cpu_seconds(pid: int) -> float:
    """A process's user and system CPU seconds so far (/proc/<pid>/stat: utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _look(test_id: uuid.UUID) -> dict:
    """One look, as workers/abtest.analyse takes it: seconds, this process's and its Postgres backend's CPU."""
    began, cpu = time.perf_counter(), time.process_time()
    with _db.transaction() as session:
        backend = session.scalar(sa.text("SELECT pg_backend_pid()"))
        backend_cpu = _cpu_seconds(backend)
        test = ab_analysis.lock_due(session, test_id)
        results = ab_analysis.take_look(session, test, now=utcnow())
    return {"seconds": time.perf_counter() - began, "cpu": time.process_time() - cpu,
            "postgres_cpu": _cpu_seconds(backend) - backend_cpu, "units": results["units"],
            "decision": results["decision"]}


def _machine_busy() -> float:
    """The machine's CPU seconds so far, all cores, idle and I/O wait left out (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _round(pool, db: Database) -> dict:
    """Beat's sweep, then a look at each due test on the pool; the round's figures."""
    busy, load = _machine_busy(), os.getloadavg()[0]
    began = time.perf_counter()
    with db.transaction() as session:
        due = ab_analysis.due_tests(session)
    looks = pool.map(_look, due, chunksize=1)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "looks": looks, "tests": len(due), "load": (load, os.getloadavg()[0]),
            "machine_cores": (_machine_busy() - busy) / seconds, "cores": os.cpu_count()}


def _describe(name: str, figures: dict) -> str:
    looks = figures["looks"]
    if not looks:
        return f"{name}: no test was due (each reached a verdict)"
    times = sorted(look["seconds"] for look in looks)
    return (f"{name}: {figures['tests']} looks in {figures['seconds']:.2f} s on {PROCESSES} processes; a look p50 "
            f"{statistics.median(times) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms (its process's CPU p50 "
            f"{statistics.median(look['cpu'] for look in looks) * 1000:.0f} ms, its Postgres backend's "
            f"{statistics.median(look['postgres_cpu'] for look in looks) * 1000:.0f} ms); machine "
            f"{figures['machine_cores']:.2f} of {figures['cores']} cores busy, load average "
            f"{figures['load'][0]:.2f} -> {figures['load'][1]:.2f}")


def analysis(*, database: str, tests: int, predictions: int) -> Iterator[str]:
    """The section's lines, as they come."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    migrate(url)
    db = Database(url)
    now = utcnow()
    _partitions(db, now.date())
    seeded = [Test(index, predictions) for index in range(tests)]
    yield (f"analysis: {tests} tests x {predictions:,} predictions over {DAYS} days (half with actuals, "
           f"{predictions // PREDICTIONS_PER_UNIT:,} units each), database {database}; load average "
           f"{os.getloadavg()[0]:.2f}")
    began = time.monotonic()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        for test in seeded:
            _announce(db, test, now - timedelta(days=DAYS, minutes=1))
            _add(conn, test, predictions, end=now, seconds=DAYS * 86400)
            conn.execute(_STALE.format(which="true"), {"model": test.model_id})
            yield f"  test {test.index} seeded ({time.monotonic() - began:.0f} s)"
        conn.execute("ANALYZE")
    seeding = time.monotonic() - began
    hours, tallied = _refresh(db)
    yield f"  seeded in {seeding:.0f} s; {hours:,} hours tallied by rollups.refresh in {tallied:.0f} s (untimed)"

    context = multiprocessing.get_context("spawn")  # each process opens its own engine, none inherited
    with context.Pool(PROCESSES, initializer=_open, initargs=(url,)) as pool:
        pool.map(time.sleep, [0.1] * PROCESSES)  # started and imported before the clock runs
        catch_up = _round(pool, db)
        yield _describe("catch-up round (each test's first look, its whole window)", catch_up)
        yield "  per test: " + ", ".join(f"{look['seconds']:.2f} s" for look in catch_up["looks"])
        first = catch_up["looks"][0]
        yield f"  test 0's units {first['units']}, decision {first['decision']}"
        steady = []
        for round_ in range(ROUNDS):
            traffic = predictions * STEADY_MINUTES * 60 // (DAYS * 86400)
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                for test in seeded:
                    added = _add(conn, test, traffic, end=utcnow(), seconds=STEADY_MINUTES * 60)
                    late = _late_actuals(conn, test, round_)
                    conn.execute(_STALE.format(which="request_id = ANY(%(ids)s)"),
                                 {"model": test.model_id, "ids": [f"r{n}" for n in added] + late})
            hours, tallied = _refresh(db)
            figures = _round(pool, db)
            steady.append(figures)
            yield (f"  steady round {round_ + 1} after {traffic:,} new predictions and "
                   f"{len(LATE_HOURS_AGO) * LATE_ACTUALS} late actuals per test ({hours} hours tallied in "
                   f"{tallied:.1f} s, untimed)")
            yield "  " + _describe(f"steady round {round_ + 1}", figures)
            yield "    per test: " + ", ".join(f"{look['seconds'] * 1000:.0f} ms" for look in figures["looks"])
    db.dispose()

    rounds = [figures["seconds"] for figures in steady]
    looks = sorted(look["seconds"] for figures in steady for look in figures["looks"])
    yield (f"steady rounds: p50 {statistics.median(rounds):.2f} s, max {max(rounds):.2f} s for {tests} tests; a look "
           f"p50 {statistics.median(looks) * 1000:.0f} ms, max {looks[-1] * 1000:.0f} ms")
    for label, seconds in (("p50", statistics.median(rounds)), ("max", max(rounds))):
        yield (f"EXTRAPOLATION (not measured): {TARGET_TESTS} tests on {PROCESSES} processes, steady round {label} "
               f"x {TARGET_TESTS} / {tests} = {seconds * TARGET_TESTS / tests:.1f} s (target < {TARGET_SECONDS} s)")
    yield (f"EXTRAPOLATION (not measured): {TARGET_TESTS} tests' catch-up round (every window read whole) "
           f"{catch_up['seconds'] * TARGET_TESTS / tests:.0f} s")
