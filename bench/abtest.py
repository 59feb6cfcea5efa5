"""The A/B test issue's figures (issue 14): assignment overhead in the serving path, and a scheduled round of
A/B analyses.

    .venv/bin/python -m bench.abtest [--part assignment|analysis] [--quick] [--tests N] [--predictions N]

1. assignment: `replica.bucket(salt, unit)` + `choose(routes, point)` per unit over `--units` (200,000) units,
   as predictions.predict places a request: an A/B test's salted 50/50 split, beside a canary's 10/90 split
   salted with the endpoint's name (no test), a request naming no unit (placed at random), and one whole
   in-process prediction of 1 row (predictions.predict with an iris logistic regression loaded from skops
   bytes, its LoadedModel.predict alone beside it), so that the overhead reads as a share of a request; and
   the same requests with a shadow B, whose copies the mirror's thread answers in the same process.
2. analysis: bench/abtest_analysis.py (its docstring says how).

No peer: the platforms we compare against elsewhere (MLflow, MLServer) have no A/B tests of their own.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from typing import Callable

from prometheus_client import CollectorRegistry

from services.serving.mirror import Mirror
from services.serving.predictions import predict
from services.serving.replica import Replica, Route, bucket, choose
from services.serving.window import ServingStats

SALT = str(uuid.UUID(int=14))  # an A/B test's id
ENDPOINT = "iris-production"
SPLIT = (Route("b", 2, 50.0), Route("a", 1, 50.0))  # B listed first, as a test's candidate is
CANARY = (Route("b", 2, 10.0), Route("a", 1, 90.0))
REPEATS = 5
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _timed(run: Callable[[], object], count: int) -> tuple[float, float]:
    """Median and best microseconds per item of `run` over `count` items, over REPEATS runs."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(times), min(times)


def _salted(units: list[str]) -> None:
    for unit in units:
        choose(SPLIT, bucket(SALT, unit))


def _canary(units: list[str]) -> None:
    for unit in units:
        choose(CANARY, bucket(ENDPOINT, unit))


def _unitless(units: list[str]) -> None:
    for _ in units:
        choose(CANARY, random.random() * 100.0)


class _DiscardedLog:
    """Stands for serving's PredictionLog, whose `add` appends to a buffer under a lock; sending the batches to
    the broker happens off the request path (its own thread) and is left out."""

    def add(self, records: list[dict]) -> None:
        pass


def _replica(shadow: bool = False) -> tuple[Replica, list[dict]]:
    """A replica whose control plane names two iris logistic regressions on one endpoint, split by a salted
    50/50 A/B test (`shadow`: A answering everything, B a copy of it); and the iris rows."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shared.served_model import LoadedModel

    x, y = load_iris(return_X_y=True)
    artifacts = {name: sio.dumps(LogisticRegression(C=c, max_iter=1000).fit(x, y))
                 for name, c in (("a", 1.0), ("b", 0.5))}
    model_id = str(uuid.uuid4())
    desired = {"model_id": model_id,
               "changes": [{"effective_at": "2026-01-01T00:00:00+00:00", "salt": SALT,
                            "routes": [{"deployment_id": r.deployment_id, "version": r.version, "weight": r.weight}
                                       for r in SPLIT] if not shadow else
                            [{"deployment_id": "a", "version": 1, "weight": 100.0},
                             {"deployment_id": "b", "version": 2, "weight": 100.0, "shadow": True}]}],
               "deployments": {r.deployment_id: {"version": r.version, "artifact_sha256": r.deployment_id * 64,
                                                 "features": FEATURES} for r in SPLIT}}

    def load(deployment: dict) -> LoadedModel:
        return LoadedModel.load(artifacts[deployment["artifact_sha256"][0]], flavor="skops",
                                features=deployment["features"], profile=None, allow_pickle=False)

    replica = Replica(lambda path, headers, body=None: (200, desired), lambda: "", load, lambda endpoint: {},
                      poll_seconds=3600.0)
    rows = [dict(zip(FEATURES, map(float, row))) for row in x]
    return replica, rows


def assignment(*, units: int, requests: int) -> list[str]:
    names = [f"user-{n}" for n in range(units)]
    in_b = sum(choose(SPLIT, bucket(SALT, unit)).deployment_id == "b" for unit in names)
    lines = [f"assignment over {units:,} units, median (best) of {REPEATS} runs; {in_b / units:.2%} of the units "
             "met B at a 50% split"]
    salted = _timed(lambda: _salted(names), units)
    for label, figures in (("A/B test, salted 50/50 split", salted),
                           ("canary 10/90, salted with the endpoint's name", _timed(lambda: _canary(names), units)),
                           ("request naming no unit (random point)", _timed(lambda: _unitless(names), units))):
        lines.append(f"  {label}: {figures[0]:.2f} us ({figures[1]:.2f}) per assignment (target < 100 us)")

    replica, rows = _replica()
    bodies = [{"unit_id": names[n % units], "instances": [rows[n % len(rows)]]} for n in range(requests)]
    request = _predictions(replica, bodies, Mirror())
    model = replica.model(replica.desired(ENDPOINT).deployments["a"])
    alone = _timed(lambda: [model.predict(body["instances"]) for body in bodies], requests)
    replica.stop()
    lines.append(f"  one in-process prediction of 1 row (predictions.predict, iris logistic regression, {requests:,} "
                 f"requests): {request[0]:.1f} us ({request[1]:.1f}); the model's LoadedModel.predict alone "
                 f"{alone[0]:.1f} us ({alone[1]:.1f})")
    lines.append(f"  the salted assignment is {salted[0] / request[0]:.1%} of the in-process request (HTTP, "
                 "authentication and JSON come on top: bench/serving.py measures ~1.3 ms per request with 1 client)")
    replica, _ = _replica(shadow=True)
    mirror = Mirror()
    shadowed = _predictions(replica, bodies, mirror)
    mirror.close()
    replica.stop()
    lines.append(f"  the same with a shadow B (A answers, B a copy on the mirror's thread, in this process): "
                 f"{shadowed[0]:.1f} us ({shadowed[1]:.1f}) per request; {mirror.dropped:,} copies of "
                 f"{requests * (REPEATS + 1):,} dropped by a mirror that fell behind back-to-back requests")
    return lines


def _predictions(replica: Replica, bodies: list[dict], mirror: Mirror) -> tuple[float, float]:
    """predictions.predict's time per request over `bodies`, after a warm-up round (versions loaded, series made)."""
    stats, log = ServingStats(CollectorRegistry()), _DiscardedLog()

    def whole() -> None:
        for body in bodies:
            predict(replica=replica, stats=stats, prediction_log=log, mirror=mirror, endpoint=ENDPOINT, body=body,
                    max_rows=1000)

    whole()
    return _timed(whole, len(bodies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("assignment", "analysis"), help="one part only (default: both)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 tests of 100,000 predictions")
    parser.add_argument("--units", type=int, default=200_000)
    parser.add_argument("--tests", type=int, help="tests analysed (default 10; --quick 2)")
    parser.add_argument("--predictions", type=int, help="predictions per test (default 1,000,000; --quick 100,000)")
    parser.add_argument("--database", default="modelyard_bench_abtest")
    args = parser.parse_args()
    if args.part in (None, "assignment"):
        print("\n".join(assignment(units=args.units, requests=2_000 if args.quick else 20_000)), flush=True)
    if args.part in (None, "analysis"):
        from bench.abtest_analysis import analysis

        tests = args.tests or (2 if args.quick else 10)
        predictions = args.predictions or (100_000 if args.quick else 1_000_000)
        for line in analysis(database=args.database, tests=tests, predictions=predictions):
            print(line, flush=True)


if __name__ == "__main__":
    main()
