"""Monitoring's figures (issue 13), each beside its peer measured in the same run (bench/README.md).

    .venv/bin/python -m bench.monitoring [--part ingest|drift-sweep|evidently ...] [--quick]

Parts (default: all):
  - `ingest` (bench/monitoring_ingest.py): the single-record API's p99, the batch API's and the ingest
    queue's records/s into Postgres through `make stack`, MLflow's log_batch beside them;
  - `drift-sweep` (bench/monitoring_drift.py): 1,000 models x 20 features x 10,000-prediction windows by
    beat's sweep on a 2-process drift worker;
  - `evidently` (bench/monitoring_drift.py): Evidently's data drift report against ours on 25 features
    x 100,000 rows, test and decision per feature;
  - `performance` (bench/monitoring_performance.py): `performance?days=30` over 10 million stored
    predictions, and the hourly tallies' refresh.
It prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import monitoring_drift, monitoring_ingest, monitoring_performance

PARTS = ("ingest", "drift-sweep", "evidently", "performance")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", choices=PARTS, help="the parts to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a tenth of the requests and models")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--broker", default=os.environ.get("MODELYARD_TEST_BROKER_URL",
                                                           "amqp://guest:guest@127.0.0.1:5672//"))
    parser.add_argument("--redis", default=os.environ.get("MODELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mlflow-port", type=int, default=5001)
    parser.add_argument("--mlflow-venv", type=Path, default=Path("/tmp/mlflow-venv"))
    parser.add_argument("--evidently-venv", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "evidently-venv")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--singles", type=int, default=2_000, help="single-record requests (1 client)")
    parser.add_argument("--batches", type=int, default=400, help="1,000-record requests over the clients")
    parser.add_argument("--queue-batches", type=int, default=400, help="500-record batches sent to the ingest queue")
    parser.add_argument("--models", type=int, default=1000, help="versions the drift sweep computes")
    parser.add_argument("--references", type=int, default=None,
                        help="reference samples the versions share in turn (default: one each)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side of the Evidently comparison")
    parser.add_argument("--predictions", type=int, default=10_000_000, help="stored for the performance query")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts, scale = args.part or PARTS, 10 if args.quick else 1
    work_dir = Path(tempfile.mkdtemp(prefix="modelyard-monitoring-bench-"))
    print(f"Monitoring benchmark: logs in {work_dir}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
          f"cores; {time.strftime('%Y-%m-%dT%H:%M:%S%z')}", flush=True)
    figures: dict = {}
    if "ingest" in parts:
        figures["ingest"] = monitoring_ingest.run(
            postgres=args.postgres, port=args.port, mlflow_port=args.mlflow_port, mlflow_venv=args.mlflow_venv,
            work_dir=work_dir, singles=args.singles // scale, batches=args.batches // scale, clients=args.clients,
            queue_batches=args.queue_batches // scale)
        print("\n## Ingestion\n" + "\n".join(monitoring_ingest.report(figures["ingest"])), flush=True)
    comparison = sweep = None
    if "evidently" in parts:
        monitoring_drift.ensure_evidently(args.evidently_venv, _say)
        comparison = monitoring_drift.evidently_comparison(venv=args.evidently_venv, repeats=args.repeats, log=_say)
    if "drift-sweep" in parts:
        models = args.models // scale
        sweep = monitoring_drift.sweep(admin_url=f"postgresql+psycopg://{args.postgres.split('://', 1)[1]}/postgres",
                                       broker=args.broker, redis=args.redis, models=models,
                                       references=args.references or models, log=_say)
    if comparison or sweep:
        figures.update({"drift_sweep": sweep, "evidently": comparison})
        print("\n## Drift")
        monitoring_drift.print_figures(sweep, comparison)
    if "performance" in parts:
        figures["performance"] = monitoring_performance.run(postgres=args.postgres, port=args.port, work_dir=work_dir,
                                                            predictions=args.predictions // scale, log=_say)
        print("\n## Performance\n" + "\n".join(monitoring_performance.report(figures["performance"])), flush=True)
    text = json.dumps(figures, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print("\nJSON:\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
