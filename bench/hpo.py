"""The HPO figures of issue 3: search quality, speed-up on real workers, and overhead per trial.

1. Quality (bench.hpo_quality): mean and std over seeds of the best 5-fold CV score of our five
   strategies, plain random search and plain Optuna TPE, on breast_cancer, digits and wine.
2. Speed-up and platform overhead (bench.hpo_workers): the same 20-trial job on a real Celery worker
   with 1 and then 2 processes, timed from the stored trials.
3. The optimizer's own ask/tell time per strategy (bench.hpo_ask).

    .venv/bin/python -m bench.hpo --quick        # a few minutes: 1 seed, budget 20, 2 datasets
    .venv/bin/python -m bench.hpo                # the full figures: 5 seeds, budgets 20 and 50

It prints figures and PASS/FAIL beside each target; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import hpo_ask, hpo_quality, hpo_workers
from bench.hpo_problems import PROBLEMS


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hpo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per (dataset, budget, method) (default 5)")
    parser.add_argument("--budgets", default="20,50", help="comma-separated trial budgets (default 20,50)")
    parser.add_argument("--datasets", default=",".join(PROBLEMS), help="comma-separated, from: " + ", ".join(PROBLEMS))
    parser.add_argument("--processes", type=int, default=2, help="processes for the quality part (default 2)")
    parser.add_argument("--speed-trials", type=int, default=20, help="trials of the worker job (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, budget 20, breast_cancer and digits, a 20-trial worker job")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-workers", action="store_true", help="skip the Celery part (no servers needed)")
    parser.add_argument("--postgres", default=os.environ.get("MODELYARD_TEST_DATABASE_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--broker", default=os.environ.get("MODELYARD_TEST_BROKER_URL",
                                                           "amqp://guest:guest@127.0.0.1:5672//"))
    parser.add_argument("--redis", default=os.environ.get("MODELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.datasets = 1, "20", "breast_cancer,digits"
    args.budgets = sorted({int(b) for b in args.budgets.split(",")})
    args.datasets = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in args.datasets if d not in PROBLEMS]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(PROBLEMS)}")
    return args


def _say(line: str = "") -> None:
    print(line, flush=True)


def _quality(args: argparse.Namespace) -> None:
    todo = hpo_quality.units(args.datasets, args.budgets, args.seeds, hpo_quality.METHODS)
    trials = sum(unit.budget for unit in todo)
    _say(f"== 1. quality: {len(todo)} searches, {trials} trials of 5-fold CV, over {args.processes} processes")
    started = time.perf_counter()

    def progress(result: hpo_quality.UnitResult, done: int, total: int) -> None:
        unit = result.unit
        _say(f"  [{done}/{total} {time.perf_counter() - started:6.0f} s] {unit.dataset} {unit.method} seed {unit.seed}"
             f" budget {unit.budget}: best {max(result.scores):.4f} in {result.seconds:.1f} s")

    results = hpo_quality.run_all(todo, args.processes, progress)
    _say()
    _say(f"best CV score, mean +- std over {args.seeds} seed(s):")
    for line in hpo_quality.report(hpo_quality.best_scores(results, args.budgets), args.datasets, args.budgets):
        _say(line)
    _say()


def _workers(args: argparse.Namespace) -> None:
    _say(f"== 2. speed-up and platform overhead: a {args.speed_trials}-trial random_forest job on breast_cancer, "
         "real Celery workers")
    servers = hpo_workers.Servers(args.postgres, args.broker, args.redis)
    runs = hpo_workers.run_jobs(servers, trials=args.speed_trials, concurrencies=(1, 2), log=_say)
    for line in hpo_workers.report(runs):
        _say(line)
    _say()


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if not args.skip_quality:
        _quality(args)
    if not args.skip_workers:
        _workers(args)
    _say("== 3. optimizer ask/tell time")
    for line in hpo_ask.report("breast_cancer", [20, 50]):
        _say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
