"""The monitoring issue's drift figures (bench/monitoring.py runs them; bench/README.md says how).

1. `sweep`: N served versions (20 features, a 10,000-row reference sample, a window of 10,000 predictions
   with features in Postgres, loaded by COPY), computed by a real `celery worker -c 2` on the drift queue
   through beat's task path (drift.sweep -> drift.compute chunks): wall time from sending the sweep to the
   last report stored.
2. `evidently_comparison`: Evidently's data drift report (legacy DataDriftPreset, in its own virtualenv)
   and ours (drift_tests on the same in-memory frames) on 25 features x 100,000 rows, the test chosen and
   the decision per feature compared, and both compute times.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psycopg
import sqlalchemy as sa

FEATURES, ROWS = 20, 10_000
EVIDENTLY_FEATURES, EVIDENTLY_ROWS = 25, 100_000
# Evidently's names of its tests, as ours name them.
EVIDENTLY_TESTS = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensen_shannon",
                   "K-S p_value": "ks", "chi-square p_value": "chi_square", "Z-test p_value": "z"}


def _window_frame(rng: np.random.Generator, rows: int, shift: float) -> pd.DataFrame:
    columns = {f"x{i}": rng.normal(shift if i < 3 else 0, 1, rows).round(4) for i in range(FEATURES - 5)}
    columns.update({f"c{i}": rng.choice(["a", "b", "c", "d"], rows) for i in range(5)})
    return pd.DataFrame(columns)


def _database(admin_url: str, name: str, *, create: bool = True) -> str:
    """A fresh database `name` (with create=False: dropped only)."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        if create:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _load(url: str, store, *, models: int, references: int, rng: np.random.Generator) -> list[uuid.UUID]:
    """`models` versions, each with its baseline and 10,000 predictions with features of the last hour, by
    COPY; the versions share `references` reference samples in turn (a worker keeps 16: with more
    references than that, every report reads and prepares its own, as a real sweep does)."""
    from services.monitoring.tables import VersionBaseline
    from shared.db import Database

    kinds = {f"x{i}": "numeric" for i in range(FEATURES - 5)} | {f"c{i}": "categorical" for i in range(5)}
    shas = []
    for _ in range(references):
        reference = _window_frame(rng, ROWS, 0.0)
        reference["__prediction__"] = rng.choice([0, 1], ROWS)
        shas.append(store.put_bytes(reference.to_csv(index=False).encode()).sha256)
    window = _window_frame(rng, ROWS, 0.5)
    features = [orjson.dumps(row).decode() for row in window.to_dict("records")]
    now = datetime.now(timezone.utc)
    times = [now - timedelta(seconds=n * 0.3) for n in range(ROWS)]
    model_ids = [uuid.uuid4() for _ in range(models)]
    db = Database(url)
    with db.transaction() as session:
        session.add_all(VersionBaseline(model_id=model_id, version=1, model_type="classification",
                                        reference_sha256=shas[n % references], reference_rows=ROWS,
                                        feature_kinds=kinds) for n, model_id in enumerate(model_ids))
    db.dispose()
    with psycopg.connect(sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        with conn.cursor() as cursor:
            with cursor.copy("COPY predictions (id, day, model_id, version, request_id, features, prediction, "
                             "predicted_at, received_at) FROM STDIN") as copy:
                for model_id in model_ids:
                    for n in range(ROWS):
                        copy.write_row((uuid.uuid4(), times[n].date(), model_id, 1, f"r{n}", features[n], str(n % 2),
                                        times[n], now))
        conn.execute("ANALYZE predictions")
    return model_ids


def sweep(*, admin_url: str, broker: str, redis: str, models: int, references: int, log) -> dict:
    """Load `models` versions, start a 2-process drift worker, send drift.sweep, wait for every report; the
    database is dropped afterwards."""
    run_id = uuid.uuid4().hex[:10]
    url = _database(admin_url, f"bench_drift_{run_id}")
    try:
        return _sweep(url, run_id, broker=broker, redis=redis, models=models, references=references, log=log)
    finally:
        _database(admin_url, f"bench_drift_{run_id}", create=False)  # several GB at 1,000 models


def _sweep(url: str, run_id: str, *, broker: str, redis: str, models: int, references: int, log) -> dict:
    from services.monitoring.service import DRIFT_QUEUE, SWEEP_DRIFT
    from shared.artifacts import ArtifactStore, parse_keys
    from shared.config import load_settings
    from shared.migrate import migrate
    from shared.tasks import task_sender
    from tests.support.training import celery_worker, training_settings

    migrate(url)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        settings = training_settings(url, {"BROKER": broker, "REDIS": redis}, Path(tmp), run_id)
        settings.update(task_queue_prefix=f"bench.{run_id}.", events_exchange=f"modelyard.events.bench.{run_id}",
                        cache_prefix=f"modelyard-bench-{run_id}:")
        store = ArtifactStore(settings["artifact_root"], parse_keys(settings["artifact_keys"]))
        started = time.perf_counter()
        _load(url, store, models=models, references=references, rng=np.random.default_rng(1))
        log(f"loaded {models} versions x {ROWS:,} predictions in {time.perf_counter() - started:.0f} s")
        engine = sa.create_engine(url)

        def stored() -> int:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM drift_reports")).scalar_one()

        loaded = load_settings(settings)
        with celery_worker(settings, Path(tmp) / "worker.log", concurrency=2, pools=("default", DRIFT_QUEUE)):
            started = time.perf_counter()
            task_sender(loaded).send_task(SWEEP_DRIFT, queue=loaded.task_queue("default"))
            while stored() < models:
                time.sleep(0.2)
            wall = time.perf_counter() - started
        with engine.connect() as conn:
            last = conn.execute(sa.text("SELECT max(computed_at) - min(computed_at) FROM drift_reports")).scalar_one()
            drifted = conn.execute(sa.text("SELECT count(*) FROM drift_reports WHERE overall_drift_score > 0")
                                   ).scalar_one()
        engine.dispose()
    return {"models": models, "references": references, "wall_s": wall, "first_to_last_report_s": last.total_seconds(),
            "reports_with_drift": drifted, "per_model_ms": 1000 * wall / models,
            "implied_1000_models_s": 1000 * wall / models}


def evidently_frames(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """25 features x 100,000 rows each side: 17 numeric (4 shifted, one with 4 values), 8 categorical
    (2 shifted, one binary)."""
    reference, current, kinds = {}, {}, {}
    for i in range(17):
        name = f"num{i}"
        if i == 16:  # few values: tested as categorical by both
            reference[name], current[name] = rng.integers(0, 4, EVIDENTLY_ROWS), rng.integers(0, 4, EVIDENTLY_ROWS)
        else:
            shift = 0.4 if i < 4 else 0.0
            reference[name] = rng.normal(10, 3, EVIDENTLY_ROWS).round(3)
            current[name] = rng.normal(10 + 3 * shift, 3, EVIDENTLY_ROWS).round(3)
        kinds[name] = "numeric"
    for i in range(8):
        name = f"cat{i}"
        values = ["yes", "no"] if i == 7 else ["north", "south", "east", "west", "centre"]
        shifted = [0.1, 0.1, 0.2, 0.3, 0.3] if i < 2 else None
        reference[name] = rng.choice(values, EVIDENTLY_ROWS)
        current[name] = rng.choice(values, EVIDENTLY_ROWS, p=shifted)
        kinds[name] = "categorical"
    return pd.DataFrame(reference), pd.DataFrame(current), kinds


EVIDENTLY_RUN = """
import json, sys, time
import pandas as pd
from evidently.legacy.metric_preset import DataDriftPreset
from evidently.legacy.pipeline.column_mapping import ColumnMapping
from evidently.legacy.report import Report

reference, current = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
kinds = json.loads(sys.argv[3])
mapping = ColumnMapping(numerical_features=[n for n, k in kinds.items() if k == "numeric"],
                        categorical_features=[n for n, k in kinds.items() if k == "categorical"])
timings = []
for _ in range(int(sys.argv[4])):
    report = Report(metrics=[DataDriftPreset()])
    started = time.perf_counter()
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    result = report.as_dict()
    timings.append(time.perf_counter() - started)
table = next(m["result"]["drift_by_columns"] for m in result["metrics"] if "drift_by_columns" in m["result"])
print(json.dumps({"seconds": timings, "columns": {name: {"test": column["stattest_name"],
      "drifted": column["drift_detected"], "score": column["drift_score"]} for name, column in table.items()}}))
"""


def evidently_comparison(*, venv: Path, repeats: int, log) -> dict:
    """Evidently's report in its venv's subprocess, and ours in this process, on the same frames."""
    from services.monitoring import drift_tests

    reference, current, kinds = evidently_frames(np.random.default_rng(2))
    ours_seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        ours = {name: drift_tests.feature_drift(name, kind, reference[name], current[name])
                for name, kind in kinds.items()}
        ours_seconds.append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory(prefix="bench-evidently-") as tmp:
        paths = [str(Path(tmp) / f"{side}.csv") for side in ("reference", "current")]
        reference.to_csv(paths[0], index=False)
        current.to_csv(paths[1], index=False)
        answer = subprocess.run([str(venv / "bin" / "python"), "-c", EVIDENTLY_RUN, *paths, json.dumps(kinds),
                                 str(repeats)], capture_output=True, text=True, check=True)
    theirs = json.loads(answer.stdout.strip().splitlines()[-1])
    rows = []
    for name in kinds:
        their = theirs["columns"][name]
        their_test = EVIDENTLY_TESTS.get(their["test"], their["test"])
        rows.append({"feature": name, "ours": ours[name].test, "evidently": their_test,
                     "ours_drifted": ours[name].drifted, "evidently_drifted": their["drifted"],
                     "ours_statistic": ours[name].statistic, "evidently_score": their["score"],
                     "agree": ours[name].test == their_test and ours[name].drifted == their["drifted"]})
    ours_s, theirs_s = statistics.median(ours_seconds), statistics.median(theirs["seconds"])
    return {"features": rows, "ours_s": ours_s, "evidently_s": theirs_s, "ratio": theirs_s / ours_s,
            "agree": sum(row["agree"] for row in rows), "compared": len(rows)}


def ensure_evidently(venv: Path, log) -> None:
    """Evidently's own virtualenv (never a project dependency): pandas < 3, which it needs."""
    if (venv / "bin" / "python").exists():
        return
    log(f"creating {venv} with evidently and pandas<3 (once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "evidently", "pandas<3"], check=True,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def print_figures(sweep_result: dict | None, comparison: dict | None, out=sys.stdout) -> None:
    buffer = io.StringIO()
    if comparison:
        buffer.write(f"{'feature':<8} {'ours':<15} {'evidently':<15} {'drifted (ours/evidently)':<26} "
                     f"{'statistic (ours/evidently)'}\n")
        for row in comparison["features"]:
            buffer.write(f"{row['feature']:<8} {row['ours']:<15} {row['evidently']:<15} "
                         f"{str(row['ours_drifted']) + ' / ' + str(row['evidently_drifted']):<26} "
                         f"{row['ours_statistic']:.6g} / {row['evidently_score']:.6g}"
                         f"{'' if row['agree'] else '   DIFFERS'}\n")
    buffer.write("\n| figure | value | target |\n| --- | --- | --- |\n")
    if sweep_result:
        buffer.write(f"| sweep: {sweep_result['models']} models x {FEATURES} features x {ROWS:,} rows, 2 processes "
                     f"({sweep_result['references']} reference samples) | {sweep_result['wall_s']:.1f} s "
                     f"({sweep_result['per_model_ms']:.0f} ms a model) | |\n")
        buffer.write(f"| implied: 1,000 models | {sweep_result['implied_1000_models_s']:.0f} s | < 60 s |\n")
    if comparison:
        buffer.write(f"| {EVIDENTLY_FEATURES} features x {EVIDENTLY_ROWS:,} rows: ours | "
                     f"{comparison['ours_s'] * 1000:.0f} ms | |\n")
        buffer.write(f"| same: Evidently DataDriftPreset | {comparison['evidently_s'] * 1000:.0f} ms | |\n")
        buffer.write(f"| Evidently / ours | {comparison['ratio']:.1f}x | >= 10x |\n")
        buffer.write(f"| same test and decision | {comparison['agree']} of {comparison['compared']} features | all |\n")
    out.write(buffer.getvalue())
