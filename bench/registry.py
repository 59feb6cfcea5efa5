"""The registry benchmark: Modelyard's `make stack` against MLflow's tracking server, in one run.

For each server, on a fresh Postgres database seeded by COPY (Modelyard with --models rows, 100,000 by
default; MLflow with --mlflow-models, 10,000 by default, the size of the issue's reference figures), it
measures through the HTTP API, the same operations in the same order:
  - model creates per second with 1 and with 8 concurrent clients;
  - GET one model, p50/p99 latency, cached (the same 100 models again and again, warm) and uncached
    (distinct models never read before, so Modelyard's read-through cache misses every time);
  - list/search with a `q` filter, p50/p99, for a `q` that matches 10 rows and one that matches 10%;
  - the resident memory of the server's whole process tree when idle, after start-up and after the
    load: the sum of VmRSS (the target's measure), and of PSS, which counts pages shared after fork once.
Latencies are measured by one client, sequentially; throughput by N client processes (see bench/load.py).

Run from the repository root: `.venv/bin/python -m bench.registry [--quick] [--mlflow-venv PATH]`.
It prints a table with the targets, then a JSON summary (or writes it to --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python bench/registry.py`): make `bench` importable as a package all the same.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import fetch, memory, run_phase, split, wait_until_idle
from bench.mlflow_driver import MLflowServer
from bench.modelyard_driver import ModelyardStack

WORDS = ("churn", "fraud", "demand", "pricing", "risk", "sentiment", "vision", "forecast", "anomaly", "ranking")
WARM_KEYS = 100  # the "cached" GETs cycle over this many models
WARM_UP_REQUESTS = 20  # per operation, unmeasured: first connections, first query plans, lazy imports
PHASES = ("create_1", "create_n", "get_cached", "get_uncached", "search_few", "search_many")


def seed_rows(count: int) -> list[tuple[str, str]]:
    """(name, description) pairs `seed-<6 digits>-<word>`: `seed-<5 digits>` matches 10 rows, a word 10%."""
    return [(f"seed-{i:06d}-{WORDS[i % len(WORDS)]}", f"Seeded {WORDS[i % len(WORDS)]} model for the benchmark")
            for i in range(count)]


def few_rows_query(rng: random.Random, models: int) -> str:
    return f"seed-{rng.randrange(max(1, models // 10)):05d}"


def measure(target, *, models: int, requests: int, clients: int, seed: int) -> dict:
    """Start the server, seed it, run every phase, read its idle memory; always stop it."""
    rng = random.Random(seed)
    figures: dict = {"models": models}
    try:
        began = time.monotonic()
        target.start()
        figures["start_seconds"] = round(time.monotonic() - began, 1)
        # Both servers go on loading after they first answer (MLflow's job consumers, gunicorn's workers).
        figures["settle_seconds"] = round(wait_until_idle(target.pid), 1)
        figures["memory_after_start"] = memory(target.pid)

        began = time.monotonic()
        target.seed(seed_rows(models))
        figures["seed_seconds"] = round(time.monotonic() - began, 1)

        def creates(label: str, count: int):
            return [target.create_request(f"bench-{label}-{i:06d}", "Created by the benchmark") for i in range(count)]

        run_phase(target, [creates("warm", WARM_UP_REQUESTS)], target.create_status)
        figures["create_1"] = run_phase(target, [creates("one", requests)], target.create_status)
        # Warmed up at the measured concurrency too: the servers' extra database connections and the
        # gateway's upstream connections open here, not inside a phase of a few seconds.
        run_phase(target, split(creates("warm-many", WARM_UP_REQUESTS * clients), clients), target.create_status)
        figures["create_n"] = run_phase(target, split(creates("many", requests), clients), target.create_status)

        keys = target.sample_keys(WARM_KEYS + requests)
        warm, cold = keys[:WARM_KEYS], keys[WARM_KEYS:]
        run_phase(target, [[target.get_request(key) for key in warm]])
        figures["get_cached"] = run_phase(target, [[target.get_request(warm[i % len(warm)])
                                                    for i in range(requests)]])
        figures["get_uncached"] = run_phase(target, [[target.get_request(key) for key in cold]])

        run_phase(target, [[target.search_request(WORDS[i % len(WORDS)]) for i in range(WARM_UP_REQUESTS)]])
        figures["search_few"] = run_phase(target, [[target.search_request(few_rows_query(rng, models))
                                                    for _ in range(requests)]])
        figures["search_many"] = run_phase(target, [[target.search_request(WORDS[i % len(WORDS)])
                                                     for i in range(requests)]])
        # What a search returns, so a `q` that is silently ignored cannot pass for a fast one.
        for phase, q in (("search_few", few_rows_query(rng, models)), ("search_many", WORDS[0])):
            figures[phase]["rows_returned"] = target.items(fetch(target, target.search_request(q))[1])

        wait_until_idle(target.pid)
        figures["memory_idle_after_load"] = memory(target.pid)
    finally:
        target.stop()
    return figures


# --- the report -----------------------------------------------------------------------------------------

# (label, phase or memory reading, field); throughput is better higher, the rest lower.
ROWS = (
    ("creates/s, 1 client", "create_1", "per_second"),
    ("creates/s, N clients", "create_n", "per_second"),
    ("GET ms p50, cached", "get_cached", "p50_ms"),
    ("GET ms p99, cached", "get_cached", "p99_ms"),
    ("GET ms p50, uncached", "get_uncached", "p50_ms"),
    ("GET ms p99, uncached", "get_uncached", "p99_ms"),
    ("search ms p50, q ~10 rows", "search_few", "p50_ms"),
    ("search ms p99, q ~10 rows", "search_few", "p99_ms"),
    ("search ms p50, q 10% rows", "search_many", "p50_ms"),
    ("search ms p99, q 10% rows", "search_many", "p99_ms"),
    ("idle RSS MiB, after start", "memory_after_start", "rss_mib"),
    ("idle RSS MiB, after load", "memory_idle_after_load", "rss_mib"),
    ("idle PSS MiB, after load", "memory_idle_after_load", "pss_mib"),
)


def value(figures: dict | None, key: str, field: str) -> float | None:
    if not figures or key not in figures:
        return None
    return figures[key].get(field)


def ratios(ours: dict, theirs: dict | None) -> dict[str, float]:
    """ours/theirs for every figure both have."""
    found = {}
    for label, key, field in ROWS:
        a, b = value(ours, key, field), value(theirs, key, field)
        if a is not None and b:
            found[f"{key}.{field}"] = round(a / b, 3)
    return found


def targets(ours: dict, ratio: dict[str, float]) -> list[dict]:
    """The issue's targets, each with what was measured and whether it is met (None: not measured)."""
    rss = max(value(ours, "memory_after_start", "rss_mib") or 0, value(ours, "memory_idle_after_load", "rss_mib") or 0)
    checks = [
        ("creates/s with N clients >= 1000", value(ours, "create_n", "per_second"), lambda v: v >= 1000),
        ("creates/s with N clients >= 5x MLflow", ratio.get("create_n.per_second"), lambda v: v >= 5),
        ("GET p99 cached < 5 ms", value(ours, "get_cached", "p99_ms"), lambda v: v < 5),
        ("GET p99 uncached < 20 ms", value(ours, "get_uncached", "p99_ms"), lambda v: v < 20),
        ("search p99 (q ~10 rows) < 50 ms", value(ours, "search_few", "p99_ms"), lambda v: v < 50),
        ("search p99 (q 10% rows) < 50 ms", value(ours, "search_many", "p99_ms"), lambda v: v < 50),
        ("idle stack RSS < 1024 MiB", rss or None, lambda v: v < 1024),
    ]
    return [{"target": what, "measured": measured, "met": None if measured is None else check(measured)}
            for what, measured, check in checks]


def show(number: float | None) -> str:
    if number is None:
        return "-"
    if isinstance(number, int):
        return f"{number:,}"
    return f"{number:,.1f}" if abs(number) >= 10 else f"{number:.2f}"


def print_report(summary: dict) -> None:
    ours, theirs = summary["modelyard"], summary.get("mlflow")
    clients = summary["config"]["clients"]
    theirs_label = f"MLflow {summary['config'].get('mlflow_version', '')}".strip()
    print(f"\n{'':28}{'Modelyard':>14}{theirs_label:>16}{'ours/theirs':>13}")
    print(f"{'models in the table':28}{show(ours.get('models')):>14}{show((theirs or {}).get('models')):>16}")
    for label, key, field in ROWS:
        ratio = summary["ratios"].get(f"{key}.{field}")
        print(f"{label.replace('N clients', f'{clients} clients'):28}{show(value(ours, key, field)):>14}"
              f"{show(value(theirs, key, field)):>16}{(show(ratio) + 'x') if ratio else '-':>13}")

    print("\nTargets (Modelyard):")
    for target in summary["targets"]:
        verdict = {None: "n/a", True: "PASS", False: "FAIL"}[target["met"]]
        what = target["target"].replace("N clients", f"{clients} clients")
        print(f"  {verdict:5} {what:40} measured {show(target['measured'])}")

    print(f"\nCPU per phase, in cores ({os.cpu_count()} on this machine): the client processes / the server's process"
          " tree / the rest of the machine (Postgres, Redis, RabbitMQ and anything else running)")
    for name, figures in (("Modelyard", ours), ("MLflow", theirs)):
        if not figures or "error" in figures:
            continue
        for phase in PHASES:
            if phase in figures:
                p = figures[phase]
                rest = max(0.0, p["machine_cpu"] - p["client_cpu"] - p["server_cpu"])
                errors = f"  {p['errors']} ERRORS, first: {p['first_error']}" if p["errors"] else ""
                print(f"  {name:9} {phase:12} {p['clients']} client(s) {p['requests']:6} requests in {p['seconds']:6.1f}"
                      f" s   {p['client_cpu']:.2f} / {p['server_cpu']:.2f} / {rest:.2f}{errors}")
                busy = [f"{label} {cores:.2f}" for label, cores in p["server_cpu_by_process"].items() if cores >= 0.01]
                print(f"{'':14}server: {', '.join(busy)}")
    for name, figures in (("Modelyard", ours), ("MLflow", theirs)):
        if figures and "memory_idle_after_load" in figures:
            parts = ", ".join(f"{label} {mib:.0f}" for label, mib in
                              figures["memory_idle_after_load"]["rss_by_process_mib"].items())
            print(f"\n{name} idle RSS by process (MiB): {parts}")
    for name, figures in (("Modelyard", ours), ("MLflow", theirs)):
        if figures and "error" in figures:
            print(f"\n{name} FAILED: {figures['error']}")
    if theirs is None or "skipped" in (theirs or {}):
        print(f"\nMLflow skipped: {(theirs or {}).get('skipped', 'not run')}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, help="models seeded into Modelyard (default 100000)")
    parser.add_argument("--mlflow-models", type=int, help="models seeded into MLflow (default 10000)")
    parser.add_argument("--requests", type=int, help="requests per measured phase (default 1000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the create throughput")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: defaults of 2,000/1,000 models and 200 requests")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure Modelyard only")
    parser.add_argument("--mlflow-venv", type=Path, default=Path("/tmp/mlflow-venv"),
                        help="a virtualenv with mlflow and psycopg2-binary installed (default /tmp/mlflow-venv)")
    parser.add_argument("--mlflow-port", type=int, default=5001)
    parser.add_argument("--port", type=int, default=8000, help="the stack's gateway port")
    parser.add_argument("--web-workers", type=int, help="gunicorn workers per service (the stack's default if unset)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                        help="the Postgres server both databases (modelyard_bench, mlflow_bench) are made on")
    parser.add_argument("--json", type=Path, help="write the JSON summary here instead of to stdout's end")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed for the queries")
    args = parser.parse_args(argv)
    defaults = {"models": 2_000, "mlflow_models": 1_000, "requests": 200} if args.quick else \
        {"models": 100_000, "mlflow_models": 10_000, "requests": 1_000}
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    config = {key: str(val) if isinstance(val, Path) else val for key, val in vars(args).items()}
    config.update({"cpus": os.cpu_count(), "load_average": os.getloadavg(), "work_dir": str(work_dir),
                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    print(f"Registry benchmark: logs in {work_dir}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
          flush=True)
    summary: dict = {"config": config}
    plan = {"models": 0, "requests": args.requests, "clients": args.clients, "seed": args.seed}

    mlflow_bin = args.mlflow_venv / "bin" / "mlflow"
    if args.skip_mlflow:
        summary["mlflow"] = {"skipped": "--skip-mlflow"}
    elif not mlflow_bin.exists():
        summary["mlflow"] = {"skipped": f"no {mlflow_bin}: python3 -m venv {args.mlflow_venv} && "
                                        f"{args.mlflow_venv}/bin/pip install mlflow psycopg2-binary"}
    else:
        server = MLflowServer(venv=args.mlflow_venv, postgres=args.postgres, database="mlflow_bench",
                              port=args.mlflow_port, work_dir=work_dir)
        config["mlflow_version"] = server.version()
        print(f"MLflow {config['mlflow_version']}: {args.mlflow_models:,} models, {args.requests} requests per phase",
              flush=True)
        summary["mlflow"] = run_safely(server, **{**plan, "models": args.mlflow_models})

    stack = ModelyardStack(postgres=args.postgres, database="modelyard_bench", port=args.port, work_dir=work_dir,
                           web_workers=args.web_workers)
    print(f"Modelyard: {args.models:,} models, {args.requests} requests per phase", flush=True)
    summary["modelyard"] = run_safely(stack, **{**plan, "models": args.models})

    theirs = summary["mlflow"] if "create_n" in summary["mlflow"] else None
    summary["ratios"] = ratios(summary["modelyard"], theirs)
    summary["targets"] = targets(summary["modelyard"], summary["ratios"])
    print_report(summary)
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
        print(f"\nJSON summary written to {args.json}")
    else:
        print("\nJSON summary:\n" + text)
    failed = any("error" in summary[name] for name in ("modelyard", "mlflow"))
    return 1 if failed else 0


def run_safely(target, **plan) -> dict:
    """Measure one server; a server that fails is reported as such and the other is still measured."""
    try:
        return measure(target, **plan)
    except (RuntimeError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    sys.exit(main())
