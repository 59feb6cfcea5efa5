"""The monitoring issue's figures (bench/README.md). For now its drift part (bench/monitoring_drift.py):
the drift sweep through Celery, and Evidently's data drift report against ours.

    .venv/bin/python -m bench.monitoring [--models 1000] [--references 1000] [--skip-sweep] [--skip-evidently]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench import monitoring_drift


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000, help="versions the drift sweep computes")
    parser.add_argument("--references", type=int, default=None,
                        help="reference samples the versions share in turn (default: one each)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side of the Evidently comparison")
    parser.add_argument("--evidently-venv", type=Path,
                        default=Path(os.environ.get("TMPDIR", "/tmp")) / "evidently-venv")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--postgres", default=os.environ.get("MODELYARD_TEST_DATABASE_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--broker", default=os.environ.get("MODELYARD_TEST_BROKER_URL",
                                                           "amqp://guest:guest@127.0.0.1:5672//"))
    parser.add_argument("--redis", default=os.environ.get("MODELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    comparison = sweep = None
    if not args.skip_evidently:
        monitoring_drift.ensure_evidently(args.evidently_venv, _say)
        comparison = monitoring_drift.evidently_comparison(venv=args.evidently_venv, repeats=args.repeats, log=_say)
    if not args.skip_sweep:
        sweep = monitoring_drift.sweep(admin_url=args.postgres, broker=args.broker, redis=args.redis,
                                       models=args.models, references=args.references or args.models, log=_say)
    monitoring_drift.print_figures(sweep, comparison)
    if args.json:
        args.json.write_text(json.dumps({"drift_sweep": sweep, "evidently": comparison}, indent=2, default=str))


if __name__ == "__main__":
    main()
