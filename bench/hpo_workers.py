"""Speed-up and platform overhead of HPO on real Celery workers.

The same 20-trial job (random strategy, so both runs evaluate the very same candidates) is requested
through the HTTP API (the all-in-one app, in process) and run by a `celery worker` subprocess on
RabbitMQ, first with concurrency 1 and parallelism 1, then with concurrency 2 and parallelism 2, on a
Postgres database made for this run (migrated, dropped at the end), with per-run queue names.

From the stored Trial rows (timestamps written by the platform itself):
- search wall time: job created -> last trial finished;
- overhead in flight: finished_at - dispatched_at - duration_s (enqueue after commit, broker, worker
  pick-up, claiming the trial, loading the cached data, waiting for the job lock, storing the result);
- dispatch gap: the trial that freed the slot finished -> this trial dispatched (the coordinator
  rebuilding the strategy from the stored trials, asking, writing the trial row);
- total per trial: dispatch gap + overhead in flight, i.e. all of a slot's time around one trial that
  is not evaluate_trial (the first `parallelism` trials, dispatched by start_training, have no gap).
The random strategy's own ask is about a millisecond, so these are platform figures; the optimizer's
ask time for every strategy is measured separately (hpo_ask).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from launch.apps import create_app
from services.registry.handlers import TrainingOutcomes
from services.training.handlers import VersionRegistrations
from services.training.tables import Trial, TrainingJob
from shared.config import load_settings
from shared.db import normalise_url
from shared.migrate import migrate
from tests.support.polling import wait_for
from tests.support.registry import bearer, create_model
from tests.support.training import (
    bundled_frame, celery_worker, event_pipeline, training_settings, upload_frame,
)

FINISHED = ("succeeded", "failed", "cancelled")
# Random forest on breast_cancer with at most 120 trees: about 0.3-1 s per 5-fold trial on one core.
SPEED_SPACE = {"n_estimators": {"type": "int", "low": 20, "high": 120, "log": False},
               "max_depth": {"type": "int", "low": 2, "high": 12, "log": False},
               "max_features": {"type": "float", "low": 0.1, "high": 1.0, "log": False}}


@dataclass(frozen=True)
class JobRun:
    concurrency: int
    status: str
    search_seconds: float
    job_seconds: float
    evaluate_seconds: list[float]
    in_flight_overhead: list[float]
    dispatch_gaps: list[float]
    total_overhead: list[float]


@dataclass
class Servers:
    postgres: str
    broker: str
    redis: str


def _seconds(delta) -> float:
    return delta.total_seconds()


def _measure(engine: sa.Engine, job_id: str, concurrency: int) -> JobRun:
    with engine.connect() as conn:
        job = conn.execute(sa.select(TrainingJob.__table__).where(TrainingJob.id == uuid.UUID(job_id))).one()
        trials = conn.execute(sa.select(Trial.__table__).where(Trial.job_id == job.id)
                              .order_by(Trial.finished_at)).all()
    done = [t for t in trials if t.finished_at is not None and t.duration_s is not None]
    in_flight = {t.number: _seconds(t.finished_at - t.dispatched_at) - t.duration_s for t in done}
    # A trial asked when another finished was dispatched in that trial's transaction: its gap is the
    # time from the latest finish before its dispatch (the first `parallelism` trials have none).
    gaps = {}
    for t in done:
        before = [o.finished_at for o in done if o.finished_at <= t.dispatched_at]
        if before:
            gaps[t.number] = _seconds(t.dispatched_at - max(before))
    last = max(t.finished_at for t in done)
    end = job.finished_at or last
    return JobRun(concurrency, job.status, _seconds(last - job.created_at), _seconds(end - job.created_at),
                  [t.duration_s for t in done], list(in_flight.values()), list(gaps.values()),
                  [in_flight[n] + gap for n, gap in gaps.items()])


def _database(admin_url: str, name: str) -> str:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop(admin_url: str, name: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def run_jobs(servers: Servers, *, trials: int, concurrencies: tuple[int, ...], log) -> list[JobRun]:
    """One job per concurrency on a fresh worker; the database and queues are removed afterwards."""
    run_id = uuid.uuid4().hex[:10]
    admin_url = normalise_url(servers.postgres)
    name = f"bench_hpo_{run_id}"
    url = _database(admin_url, name)
    try:
        migrate(url)
        with tempfile.TemporaryDirectory(prefix="bench-hpo-") as tmp:
            settings = training_settings(url, {"BROKER": servers.broker, "REDIS": servers.redis}, Path(tmp), run_id)
            settings.update(task_queue_prefix=f"bench.{run_id}.", events_exchange=f"modelyard.events.bench.{run_id}",
                            cache_prefix=f"modelyard-bench-{run_id}:")
            return _run(settings, trials=trials, concurrencies=concurrencies, tmp=Path(tmp), log=log)
    finally:
        _drop(admin_url, name)


def _run(settings: dict, *, trials: int, concurrencies: tuple[int, ...], tmp: Path, log) -> list[JobRun]:
    app = create_app(settings)
    engine = sa.create_engine(settings["database_url"])
    client, runs = app.test_client(), []
    try:
        headers = bearer(app, "data_scientist", "bench")
        dataset = upload_frame(client, headers, bundled_frame("breast_cancer")[0], "breast_cancer")
        consumers = [TrainingOutcomes(load_settings(settings)), VersionRegistrations()]
        with event_pipeline(load_settings(settings), consumers):
            for concurrency in concurrencies:
                with celery_worker(settings, tmp / f"worker-{concurrency}.log", concurrency=concurrency):
                    model = create_model(client, headers, target_variable="target")
                    response = client.post(f"/api/v1/models/{model['id']}/trainings", headers=headers, json={
                        "dataset_id": dataset["id"], "estimator": "random_forest", "cross_validation_folds": 5,
                        "random_state": 7, "optimization": {"strategy": "random", "max_trials": trials,
                                                            "parallelism": concurrency,
                                                            "search_space": SPEED_SPACE}})
                    if response.status_code != 202:
                        raise RuntimeError(f"training request refused: {response.status_code} {response.json}")
                    url = response.json["url"]
                    started = time.monotonic()
                    wait_for(lambda: client.get(url, headers=headers).json["status"] in FINISHED,
                             timeout=60 + 10 * trials, interval=0.2, what=f"the concurrency {concurrency} job")
                    log(f"  concurrency {concurrency}: job finished after {time.monotonic() - started:.1f} s")
                    runs.append(_measure(engine, response.json["id"], concurrency))
    finally:
        engine.dispose()
        app.extensions["modelyard"].db.dispose()
    return runs


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}" if values else "-"


def report(runs: list[JobRun]) -> list[str]:
    # Slots busy: the share of (worker processes x search time) spent inside evaluate_trial; what the
    # dispatch loses. A slower trial with 2 workers is the cores being shared, not the dispatch.
    lines = [f"  {'workers':>7}  {'status':<10}{'search s':>9}{'job s':>8}{'trial s (median)':>18}"
             f"{'slots busy':>12}{'in flight ms':>14}{'dispatch gap ms':>17}{'total ms':>10}"]
    for run in runs:
        busy = sum(run.evaluate_seconds) / (run.concurrency * run.search_seconds)
        lines.append(f"  {run.concurrency:>7}  {run.status:<10}{run.search_seconds:>9.2f}{run.job_seconds:>8.2f}"
                     f"{statistics.median(run.evaluate_seconds):>18.3f}{busy:>12.0%}"
                     f"{_median_ms(run.in_flight_overhead):>14}{_median_ms(run.dispatch_gaps):>17}"
                     f"{_median_ms(run.total_overhead):>10}")
    by_workers = {run.concurrency: run for run in runs}
    if 1 in by_workers and 2 in by_workers:
        one, two = by_workers[1], by_workers[2]
        ratio = one.search_seconds / two.search_seconds
        lines.append(f"  speed-up, 2 workers vs 1 ({len(one.evaluate_seconds)} trials): {ratio:.2f}x "
                     f"(target >= 1.7x): {'PASS' if ratio >= 1.7 else 'FAIL'}")
        cpu = sum(one.evaluate_seconds) / sum(two.evaluate_seconds)
        lines.append(f"  the same trials' evaluate_trial time, 1 worker / 2 workers: {cpu:.2f} (1.00 = two free "
                     f"cores); the best speed-up these cores allowed: {2 * cpu:.2f}x")
    overhead = [v for run in runs for v in run.total_overhead]
    if overhead:
        median = statistics.median(overhead)
        lines.append(f"  platform overhead per trial (total), median over the jobs: "
                     f"{median * 1000:.1f} ms (target < 50 ms): {'PASS' if median < 0.05 else 'FAIL'}")
    return lines
