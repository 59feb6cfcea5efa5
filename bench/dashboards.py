"""The dashboards' pages with 1,000 models and 10 million predictions (issue 15): each page's p95 < 300 ms.

`make stack` on a throwaway database (bench/modelyard_driver.py). `--models` (1,000) models are COPYed into the
registry; one of them gets `--predictions` (10,000,000) stored predictions over the last 30 days with the actuals
of 30% (bench/monitoring_performance.py's generator, made by Postgres), tallied as beat tallies them, and every
other model a copy of its 30 days of hourly tallies (what beat's refresh would have left for each). Each model
has a standard drift report of 20 features (drift.py's own computation on random samples, with histograms).
Then, signed in through /monitoring/login as the admin (the session cookie a browser would send), one client
GETs each page `--requests` times after 5 unmeasured ones: p50, p95 and p99, and the server's CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests

from bench.load import run_phase
from bench.modelyard_driver import ModelyardStack
from bench.monitoring_performance import DAYS, FEATURES, _make_partitions, _refresh, _registered, _seed

TARGET_MS = 300


@dataclass
class SignedIn:
    """The stack as run_phase drives it, with the dashboards' session cookie instead of a bearer token."""

    host: str
    port: int
    pid: int
    headers: dict[str, str]


def _sign_in(stack: ModelyardStack) -> SignedIn:
    base = f"http://{stack.host}:{stack.port}"
    browser = requests.Session()
    page = browser.get(f"{base}/monitoring/login", timeout=30).text
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = browser.post(f"{base}/monitoring/login", data={"username": "admin", "password": stack.password,
                                                            "csrf_token": csrf}, headers={"Origin": base},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    return SignedIn(stack.host, stack.port, stack.pid, {"Cookie": cookie})


def _drift_report() -> dict:
    """A standard report of 20 numeric features, computed as the drift pool computes one."""
    import numpy as np

    from services.monitoring.drift import _compared

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(FEATURES)]
    reference = {name: rng.normal(50, 10, 10_000) for name in names}
    current = {name: rng.normal(50 + (5 if i % 4 == 0 else 0), 10, 5_000) for i, name in enumerate(names)}
    return _compared(reference, current, dict.fromkeys(names, "numeric"), "none", None)


def _fill(stack: ModelyardStack, big: str, models: list[str]) -> None:
    """Every other model: a copy of the big model's hourly tallies; every model: a drift report."""
    computed = _drift_report()
    now = datetime.now(timezone.utc)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO performance_hours
            SELECT m.id, p.hour, p.version, p.predictions, p.errors, p.latency_bins, p.outputs, p.output_sum,
                   p.feature_values, p.missing_values, p.labeled, p.label_pairs, p.score_bins, p.unscored,
                   p.scored_pairs, p.squared_error, p.absolute_error, p.actual_mean, p.actual_spread
            FROM performance_hours p CROSS JOIN models m WHERE p.model_id = %s AND m.id <> %s""", (big, big))
        with conn.cursor().copy("COPY drift_reports (id, model_id, version, window_hours, window_predictions, "
                                "correction, overall_drift_score, severity, report, computed_at) FROM STDIN") as copy:
            for model_id in models:
                report = {**computed, "model_id": model_id, "version": 1, "computed_at": now.isoformat()}
                copy.write_row((uuid.uuid4(), model_id, 1, 24, None, "none", report["overall_drift_score"],
                                report["severity"], json.dumps(report), now))
        conn.execute("ANALYZE performance_hours; ANALYZE drift_reports")


def run(*, postgres: str, port: int, work_dir: Path, models: int, predictions: int, requests_per_page: int,
        log) -> dict:
    stack = ModelyardStack(postgres=postgres, database="modelyard_dashboards_bench", port=port, work_dir=work_dir,
                           web_workers=None)
    try:
        stack.start()
        stack.seed([(f"seed-{i:06d}", "a bench model") for i in range(models)])
        with psycopg.connect(stack.database_url) as conn:
            ids = [str(row[0]) for row in conn.execute("SELECT id FROM models ORDER BY name")]
        big = ids[0]
        _registered(stack, big)
        _make_partitions(stack)
        log(f"making {predictions:,} predictions over {DAYS} days for one model")
        _seed(stack, big, prefix="r", count=predictions, end=datetime.now(timezone.utc), seconds=DAYS * 86400, log=log)
        log("tallying their hours")
        _refresh(stack, log)
        log(f"copying its tallies to the other {models - 1:,} models, and a drift report each")
        _fill(stack, big, ids)
        signed = _sign_in(stack)
        pages = {"models": "/monitoring/models", "models, page 2": None, "model (7 days hourly)": f"/monitoring/models/{big}",
                 "drift": "/monitoring/drift", "drift of a model": f"/monitoring/drift?model={big}",
                 "deployments": "/monitoring/deployments", "ab-tests": "/monitoring/ab-tests",
                 "alerts": "/monitoring/alerts"}
        second = requests.get(f"http://{stack.host}:{stack.port}/api/v1/models?limit=50&sort=name",
                              headers=stack.headers, timeout=30).json()["next_cursor"]
        pages["models, page 2"] = f"/monitoring/models?cursor={second}"
        figures = {"models": models, "predictions": predictions, "pages": {}}
        for name, path in pages.items():
            run_phase(signed, [[("GET", path, None)] * 5])  # warm up
            figures["pages"][name] = run_phase(signed, [[("GET", path, None)] * requests_per_page])
            log(f"  {name}: p95 {figures['pages'][name]['p95_ms']} ms")
        return figures
    finally:
        stack.stop()


def report(figures: dict) -> list[str]:
    lines = [f"{figures['models']:,} models, {figures['predictions']:,} predictions; one client, each page:"]
    for name, phase in figures["pages"].items():
        lines.append(f"  {name:24} p50 {phase['p50_ms']} ms, p95 {phase['p95_ms']} ms, p99 {phase['p99_ms']} ms "
                     f"(target p95 < {TARGET_MS} ms; {phase['errors']} errors; server {phase['server_cpu']} cores, "
                     f"machine {phase['machine_cpu']})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: a tenth of the predictions and requests")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--predictions", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=200, help="measured GETs of each page")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="dashboards-bench-") as work_dir:
        figures = run(postgres=args.postgres, port=args.port, work_dir=Path(work_dir), models=args.models,
                      predictions=args.predictions // scale, requests_per_page=args.requests // scale,
                      log=lambda message: print(message, file=sys.stderr, flush=True))
    print("\n".join(report(figures)), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
