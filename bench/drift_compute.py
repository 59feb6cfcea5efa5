"""How long one drift report takes, as the drift pool computes it: a version's 20 features, a 10,000-row
reference sample and a 10,000-prediction window in Postgres, read, tested feature by feature, stored.

The monitoring issue's drift figure (1,000 models x 20 features x 10,000-row windows on 2 worker processes
in under 60 s) is measured by bench/monitoring.py through Celery; this times
`services.monitoring.drift.version_drift` alone, in this process, and prints the implied time for 1,000
models on 2 processes (which leaves out Postgres's own CPU on the same cores).

    .venv/bin/python -m bench.drift_compute [--reports 10] [--database modelyard_bench_drift] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from services.monitoring.drift import version_drift
from services.monitoring.ingestion import store_predictions
from services.monitoring.tables import VersionBaseline
from shared.artifacts import ArtifactStore, parse_keys
from shared.db import Database
from shared.migrate import migrate
from shared.prediction_records import prediction_record

FEATURES, ROWS = 20, 10_000
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _frame(rng: np.random.Generator, rows: int, shift: float) -> pd.DataFrame:
    columns = {f"x{i}": rng.normal(shift if i < 3 else 0, 1, rows).round(4) for i in range(FEATURES - 5)}
    columns.update({f"c{i}": rng.choice(["a", "b", "c", "d"], rows) for i in range(5)})
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--database", default="modelyard_bench_drift")
    parser.add_argument("--profile", metavar="FILE", help="write cProfile statistics of the timed reports to FILE")
    args = parser.parse_args()
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{args.database}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{args.database}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + args.database
    migrate(url)
    db = Database(url)
    store = ArtifactStore(tempfile.mkdtemp(prefix="drift-bench-"), parse_keys("k1:" + "A" * 43 + "="))
    rng, now = np.random.default_rng(1), datetime.now(timezone.utc)
    current = _frame(rng, ROWS, 0.5)
    baselines = []
    for _ in range(args.reports + 1):  # the first one warms the process up (imports), untimed
        model_id, reference = uuid.uuid4(), _frame(rng, ROWS, 0.0)
        reference["__prediction__"] = rng.choice([0, 1], ROWS)
        kinds = {name: "categorical" if name.startswith("c") else "numeric" for name in reference.columns}
        sha = store.put_bytes(reference.to_csv(index=False).encode()).sha256
        records = [prediction_record(model_id=model_id, version=1, request_id=f"r{n}", prediction=int(n % 2),
                                     features=row, predicted_at=now - timedelta(seconds=n))
                   for n, row in enumerate(current.to_dict("records"))]
        with db.transaction() as session:
            session.add(VersionBaseline(model_id=model_id, version=1, model_type="classification",
                                        reference_sha256=sha, reference_rows=ROWS, feature_kinds=kinds))
            store_predictions(session=session, records=records, hash_key="")
        baselines.append(model_id)
    with db.engine.connect() as conn:
        conn.execute(sa.text("ANALYZE predictions"))
        conn.commit()
    profile = cProfile.Profile() if args.profile else None

    def report_of(model_id: uuid.UUID) -> tuple[float, float]:
        started, started_cpu = time.perf_counter(), time.process_time()
        with db.transaction() as session:
            baseline = session.get(VersionBaseline, (model_id, 1))
            report = version_drift(session=session, artifacts=store, baseline=baseline, hours=24, predictions=None,
                                   correction="none", standard_hours=24, now=now + timedelta(seconds=1), hash_key="")
        assert report["window"]["rows"] == ROWS and sorted(report["drifted_features"]) == ["x0", "x1", "x2"]
        return time.perf_counter() - started, time.process_time() - started_cpu

    report_of(baselines.pop(0))
    if profile:
        profile.enable()
    # Each version has a reference of its own: the first pass reads and prepares each one (as a sweep over
    # more models than a worker keeps references does), the second finds them kept.
    for phase in ("first", "again"):
        timings, cpu = zip(*(report_of(model_id) for model_id in baselines))
        median = statistics.median(timings)
        print(f"drift report ({phase} reading of its reference), {FEATURES} features, {ROWS:,}-row reference and "
              f"window: median {median * 1000:.0f} ms (min {min(timings) * 1000:.0f}, max {max(timings) * 1000:.0f}; "
              f"this process's CPU median {statistics.median(cpu) * 1000:.0f} ms) over {len(timings)} reports; "
              f"implied: 1,000 models on 2 worker processes in {1000 * median / 2:.0f} s (target < 60 s)")
    if profile:
        profile.disable()
    if profile:
        profile.dump_stats(args.profile)
    db.engine.dispose()


if __name__ == "__main__":
    main()
