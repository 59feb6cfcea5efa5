"""The performance query over 10 million stored predictions (issue 13): `performance?days=30` < 500 ms.

`make stack` on a throwaway database (bench/modelyard_driver.py), one classification model. Its
predictions are made by Postgres itself (INSERT ... SELECT over generate_series: Python would take
longer to make them than the query takes to read them): `--predictions` (10,000,000) spread evenly over
the last 30 days, into their day partitions, with 20 features, a score and a latency each, and the
actuals of 30% of them. Then:
  - refresh: the hours tallied (rollups.refresh, as beat's ingest.refresh_tallies does), rows/s;
  - fresh: one client, `GET /api/v1/models/<id>/performance?days=30` by day and by hour: p50, p99;
  - stale hour: the same after another hour's worth of predictions (10,000,000 / 720) arrived in the
    current hour, kept stale (marked every 0.2 s, as steady ingestion marks it), which each read then
    tallies from its rows: the steady state under load.
No peer: MLflow has no prediction store, and the previous implementation read every row (at 10
million, minutes and gigabytes).
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import requests
import sqlalchemy as sa

from bench.load import run_phase
from bench.modelyard_driver import ModelyardStack

FEATURES = 20
DAYS = 30
LABELED_PERCENT = 30
CHUNK = 1_000_000
QUERIES = 60

# n's score is a fixed function of n, so that its actual can be made from n alone; 80% of the labels right.
_ROWS = f"""
INSERT INTO predictions (id, day, model_id, version, request_id, features, prediction, probabilities, latency_ms,
                         predicted_at, received_at)
SELECT gen_random_uuid(), (t AT TIME ZONE 'UTC')::date, %(model)s, 1, %(prefix)s || n,
       jsonb_build_object({", ".join(f"'x{i}', round((random() * 100)::numeric, 3)" for i in range(FEATURES))}),
       to_jsonb((((n * 7919) %% 1000) >= 500)::int),
       jsonb_build_object('0', 1 - ((n * 7919) %% 1000) / 1000.0, '1', ((n * 7919) %% 1000) / 1000.0),
       2 + random() * 20, t, t
FROM (SELECT n, %(end)s - n * %(step)s * interval '1 microsecond' AS t
      FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n) AS made
"""
_ACTUALS = f"""
INSERT INTO actuals (model_id, request_id, actual, recorded_at)
SELECT %(model)s, %(prefix)s || n,
       to_jsonb(CASE WHEN n %% 10 < 8 THEN (((n * 7919) %% 1000) >= 500)::int
                     ELSE 1 - (((n * 7919) %% 1000) >= 500)::int END), now()
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n WHERE n %% 100 < {LABELED_PERCENT}
"""
_STALE = """
INSERT INTO stale_hours (model_id, hour)
SELECT DISTINCT model_id, date_trunc('hour', predicted_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
FROM predictions WHERE model_id = %(model)s AND request_id LIKE %(like)s
"""


def _seed(stack: ModelyardStack, model_id: str, *, prefix: str, count: int, end: datetime, seconds: float,
          log) -> float:
    """`count` predictions (and actuals) ending at `end` over `seconds`; the seconds it took."""
    began = time.monotonic()
    step = seconds * 1e6 / count
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        for first in range(0, count, CHUNK):
            values = {"model": model_id, "prefix": prefix, "first": first, "last": min(count, first + CHUNK) - 1,
                      "end": end, "step": step}
            conn.execute(_ROWS, values)
            conn.execute(_ACTUALS, values)
            log(f"  {min(count, first + CHUNK):,} of {count:,} predictions made ({time.monotonic() - began:.0f} s)")
        conn.execute(_STALE, {"model": model_id, "like": f"{prefix}%"})
        conn.execute("ANALYZE predictions; ANALYZE actuals")
    return time.monotonic() - began


def day_partitions(session, today, days: int) -> None:
    """The partitions of the `days` days up to `today`, as beat's upkeep makes them for days with rows
    (partitions.keep_days): a row placed in each day, the partitions kept, the rows gone."""
    from services.monitoring import partitions

    for day in range(days):
        session.execute(sa.text(
            "INSERT INTO predictions (id, day, model_id, version, request_id, prediction, predicted_at, "
            "received_at) VALUES (gen_random_uuid(), :day, gen_random_uuid(), 1, 'seed', '1', :day, :day)"),
            {"day": today - timedelta(days=day)})
    partitions.keep_days(session, retention_days=365, today=today)
    session.execute(sa.text("DELETE FROM predictions WHERE request_id = 'seed'"))


def _make_partitions(stack: ModelyardStack) -> None:
    """The last DAYS days' partitions (day_partitions)."""
    from shared.db import Database

    db = Database("postgresql+psycopg://" + stack.database_url.split("://", 1)[1])
    try:
        with db.transaction() as session:
            day_partitions(session, datetime.now(timezone.utc).date(), DAYS + 1)
    finally:
        db.dispose()


def _refresh(stack: ModelyardStack, log) -> dict:
    """Every stale hour tallied, as beat's task does it; hours and seconds."""
    from services.monitoring import rollups
    from shared.db import Database

    db = Database("postgresql+psycopg://" + stack.database_url.split("://", 1)[1])
    began, hours = time.monotonic(), 0
    try:
        while True:
            with db.transaction() as session:
                done = rollups.refresh(session, hours=50)
            hours += done
            if not done:
                break
            log(f"  {hours} hours tallied ({time.monotonic() - began:.0f} s)")
    finally:
        db.dispose()
    return {"hours": hours, "seconds": round(time.monotonic() - began, 1)}


@contextlib.contextmanager
def _kept_stale(stack: ModelyardStack, model_id: str):
    """The current hour marked stale every 0.2 s, as steady ingestion's batches mark it, so that the stack's
    beat cannot refresh it for more than a moment while the reads run."""
    stop = threading.Event()

    def mark() -> None:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            while not stop.wait(0.2):
                conn.execute("INSERT INTO stale_hours (model_id, hour) VALUES (%s, date_trunc('hour', now()))",
                             (model_id,))

    marker = threading.Thread(target=mark, daemon=True)
    marker.start()
    try:
        yield
    finally:
        stop.set()
        marker.join()


def _queries(stack: ModelyardStack, model_id: str) -> dict:
    figures = {}
    for granularity in ("day", "hour"):
        path = f"/api/v1/models/{model_id}/performance?days={DAYS}&granularity={granularity}"
        run_phase(stack, [[("GET", path, None)] * 3])  # warm up
        figures[granularity] = run_phase(stack, [[("GET", path, None)] * QUERIES])
    return figures


def run(*, postgres: str, port: int, work_dir, predictions: int, log) -> dict:
    stack = ModelyardStack(postgres=postgres, database="modelyard_performance_bench", port=port, work_dir=work_dir,
                           web_workers=None)
    try:
        stack.start()
        base = f"http://{stack.host}:{stack.port}/api/v1"
        model = requests.post(f"{base}/models", headers=stack.headers, timeout=60, json={
            "name": "performance-bench", "type": "classification", "framework": "scikit_learn",
            "features": [f"x{i}" for i in range(FEATURES)]}).json()
        _registered(stack, model["id"])
        _make_partitions(stack)
        now = datetime.now(timezone.utc)
        log(f"making {predictions:,} predictions over {DAYS} days")
        seeded = _seed(stack, model["id"], prefix="r", count=predictions, end=now, seconds=DAYS * 86400, log=log)
        log("tallying their hours")
        figures = {"predictions": predictions, "seed_seconds": round(seeded, 1), "refresh": _refresh(stack, log)}
        figures["refresh"]["rows_per_second"] = round(predictions / figures["refresh"]["seconds"])
        figures["fresh"] = _queries(stack, model["id"])
        hourly = predictions // (DAYS * 24)
        _seed(stack, model["id"], prefix="c", count=hourly, end=datetime.now(timezone.utc),
              seconds=datetime.now(timezone.utc).minute * 60 + 1, log=log)
        with _kept_stale(stack, model["id"]):
            figures["stale_hour"] = {"rows": hourly, **_queries(stack, model["id"])}
        return figures
    finally:
        stack.stop()


def _registered(stack: ModelyardStack, model_id: str) -> None:
    """The model's type as monitoring learns it from a registered version (handlers.VersionBaselines), so
    that its hours can be tallied, without training or uploading one."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO version_baselines (model_id, version, model_type, registered_at) "
                     "VALUES (%s, 1, 'classification', now())",
                     (model_id,))


def report(figures: dict) -> list[str]:
    lines = [f"{figures['predictions']:,} predictions made in {figures['seed_seconds']} s; tallied in "
             f"{figures['refresh']['seconds']} s ({figures['refresh']['hours']} hours, "
             f"{figures['refresh']['rows_per_second']:,} rows/s)"]
    for case, label in (("fresh", "every hour tallied"),
                        ("stale_hour", f"the current hour's {figures['stale_hour']['rows']:,} rows stale")):
        for granularity in ("day", "hour"):
            phase = figures[case][granularity]
            lines.append(f"performance?days=30&granularity={granularity}, {label}: p50 {phase['p50_ms']} ms, "
                         f"p99 {phase['p99_ms']} ms (target < 500 ms; {phase['errors']} errors; server "
                         f"{phase['server_cpu']} cores, machine {phase['machine_cpu']})")
    return lines
