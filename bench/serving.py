"""The serving benchmark: Modelyard's predict endpoint against a plain Flask app and MLServer, in one run.

A GradientBoostingClassifier (300 trees) fitted on breast_cancer is served three ways, each measured by
the same load client (bench/load.py: one process and one keep-alive connection per client):
  1. Modelyard: `make stack`'s processes on a throwaway database, the model uploaded as a skops version,
     deployed blue-green with the brief's example 3, predicted through the gateway with an API key,
     validation and the prediction log on (bench/serving_modelyard.py);
  2. a plain Flask app under gunicorn (2 workers) that only loads the model and predicts;
  3. MLServer 1.7 with its scikit-learn runtime, V2 REST, for each of parallel_workers 0, 1 and 2: the
     best setting is the one compared (bench/serving_peers.py).
For each: single-row predictions with 8 clients (requests/s, p50, p99) and with 1 (p50, p99), 1,000-row
batches with 2 clients (rows/s), the seconds from process start to the first prediction, and idle memory.
For Modelyard also: deployment request to live, automatic rollback of a version that fails real traffic
(its first failed answer to answers from the previous version), a blue-green switch under load from 4 clients (failed
requests, answers without a version, clients that met the versions out of order), and whether the
prediction log reached monitoring's store.

Run from the repository root: `.venv/bin/python -m bench.serving [--quick]`. It prints a table with the
targets, then a JSON summary (or writes it to --json FILE). It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import cpu_seconds, memory, run_phase, split, wait_until_idle
from bench.misbehaving import BreaksOnRealTraffic
from bench.serving_modelyard import ModelyardServing, rollback_under_load, steps, switch_under_load
from bench.serving_peers import MLServer, PlainFlask, dataset, ensure_mlserver_venv, train

BATCH_ROWS = 1_000
WARM_UP_REQUESTS = 50  # per client, unmeasured: connections, lazy imports, the model's first calls
PHASES = ("single_8", "single_1", "batch_2", "single_8_bearer", "single_8_direct")


def rows_from(rows: list[list[float]], start: int, count: int) -> list[list[float]]:
    return [rows[(start + i) % len(rows)] for i in range(count)]


def postgres_pids() -> dict[int, str]:
    pids = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == "postgres":
                pids[int(entry)] = "postgres"
        except OSError:
            continue
    return pids


def phase(target, batches: list[list]) -> dict:
    """bench.load.run_phase, plus the cores Postgres used meanwhile: outside the server's process tree,
    it would otherwise pass for "the rest of the machine" (Modelyard reads API keys and stores the
    prediction log there; the peers use no database)."""
    pids = postgres_pids()
    before = sum(cpu_seconds(pids).values())
    figures = run_phase(target, batches)
    figures["postgres_cpu"] = round((sum(cpu_seconds(pids).values()) - before) / figures["seconds"], 2)
    return figures


def singles(server, rows: list[list[float]], count: int) -> list:
    """`count` single-row requests, each with another row."""
    once = [server.predict_request([row]) for row in rows]
    return [once[i % len(once)] for i in range(count)]


def measure_load(target, rows: list[list[float]], *, requests: int, clients: int, batches: int) -> dict:
    """The three load phases on a started server."""
    figures: dict = {}
    run_phase(target, split(singles(target, rows, WARM_UP_REQUESTS * clients), clients))
    figures["single_8"] = phase(target, split(singles(target, rows, requests), clients))
    figures["single_1"] = phase(target, [singles(target, rows, requests // 3)])
    batch = [target.predict_request(rows_from(rows, i * BATCH_ROWS, BATCH_ROWS)) for i in range(batches)]
    run_phase(target, split(batch[:2], 2))
    figures["batch_2"] = phase(target, split(batch, 2))
    figures["batch_2"]["rows_per_second"] = round(figures["batch_2"]["per_second"] * BATCH_ROWS)
    return figures


def predicted_rows(figures: dict, *, clients: int) -> int:
    """Rows answered 200 in the measured and warm-up phases (what the prediction log should store)."""
    done = sum(p["requests"] - p["errors"] for key, p in figures.items() if key in ("single_8", "single_1"))
    done += WARM_UP_REQUESTS * clients + 2 * BATCH_ROWS
    return done + (figures["batch_2"]["requests"] - figures["batch_2"]["errors"]) * BATCH_ROWS


def measure_modelyard(serving: ModelyardServing, artifacts: list[bytes], rows: list[list[float]], **plan) -> dict:
    figures: dict = {}
    try:
        figures["stack_start_seconds"] = round(serving.start(), 1)
        first, second = (serving.upload(artifact) for artifact in artifacts)
        deployment, seconds = serving.deploy(first)
        if deployment["status"] != "live":
            raise RuntimeError(f"the first deployment ended {deployment['status']}: {deployment.get('transitions')}")
        figures["deploy_to_live_seconds"] = round(seconds, 2)
        figures["deploy_steps"] = steps(deployment)
        wait_until_idle(serving.pid)
        figures.update(measure_load(serving, rows, **plan))
        expected = predicted_rows(figures, clients=plan["clients"])
        # Where the time goes, beside the real path: a bearer token (no database read to authenticate),
        # and the API key straight to serving's port (no nginx).
        for name, target in (("single_8_bearer", serving.with_bearer_token()),
                             ("single_8_direct", serving.straight_to_serving())):
            figures[name] = phase(target, split(singles(serving, rows, plan["requests"]), plan["clients"]))
            expected += figures[name]["requests"] - figures[name]["errors"]
        figures["switch"] = switch_under_load(serving, second, [serving.predict_request([row]) for row in rows])
        expected += figures["switch"]["requests"] - figures["switch"]["failed"]
        breaking = serving.upload(pickle.dumps(BreaksOnRealTraffic()), filename="model.pkl")
        figures["rollback"] = rollback_under_load(serving, breaking, [serving.predict_request([row]) for row in rows])
        expected += figures["rollback"]["requests"] - figures["rollback"]["failed"]
        figures["prediction_log"] = drained(serving, expected)
        wait_until_idle(serving.pid)
        figures["memory_idle"] = serving.serving_memory()
        figures["stack_memory_idle"] = memory(serving.pid)
        figures["start_to_first_prediction_seconds"] = round(serving.replica_start_to_first_prediction(), 2)
    finally:
        serving.stop()
    return figures


def drained(serving: ModelyardServing, expected: int, timeout: float = 60.0) -> dict:
    """Wait for the stored prediction records to reach `expected` (or stop growing)."""
    began, last, stored = time.monotonic(), -1, 0
    while time.monotonic() - began < timeout:
        stored = serving.stored_predictions()
        if stored >= expected or stored == last:
            break
        last = stored
        time.sleep(2.0)
    return {"expected": expected, "stored": stored, "seconds_waited": round(time.monotonic() - began, 1)}


def measure_peer(server, rows: list[list[float]], **plan) -> dict:
    figures: dict = {}
    try:
        figures["start_to_first_prediction_seconds"] = round(server.start(), 2)
        wait_until_idle(server.pid)
        figures.update(measure_load(server, rows, **plan))
        wait_until_idle(server.pid)
        figures["memory_idle"] = memory(server.pid)
    finally:
        server.stop()
    return figures


def run_safely(measure, *args, **kwargs) -> dict:
    """One server's figures; a server that fails is reported as such and the others are still measured."""
    try:
        return measure(*args, **kwargs)
    except (RuntimeError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# --- the report -----------------------------------------------------------------------------------------

ROWS = (
    ("single row, 8 clients: req/s", "single_8", "per_second"),
    ("single row, 8 clients: p50 ms", "single_8", "p50_ms"),
    ("single row, 8 clients: p99 ms", "single_8", "p99_ms"),
    ("single row, 1 client: p50 ms", "single_1", "p50_ms"),
    ("single row, 1 client: p99 ms", "single_1", "p99_ms"),
    ("1,000-row batches, 2 clients: rows/s", "batch_2", "rows_per_second"),
)


def value(figures: dict | None, key: str, field: str | None = None):
    if not figures or key not in figures:
        return None
    return figures[key] if field is None else figures[key].get(field)


def best_mlserver(settings: dict[str, dict], key: str, field: str) -> tuple[str | None, float | None]:
    """The MLServer setting with the highest `key.field`, and that figure."""
    measured = [(name, value(figures, key, field)) for name, figures in settings.items()]
    measured = [(name, figure) for name, figure in measured if figure is not None]
    return max(measured, key=lambda pair: pair[1]) if measured else (None, None)


def targets(summary: dict) -> list[dict]:
    ours, flask = summary["modelyard"], summary["plain_flask"]
    _, mlserver_rps = best_mlserver(summary["mlserver"], "single_8", "per_second")
    _, mlserver_rows = best_mlserver(summary["mlserver"], "batch_2", "rows_per_second")
    rps = value(ours, "single_8", "per_second")
    switch = ours.get("switch") or {}
    failed = None
    if "switch" in ours:
        failed = switch["failed"] + switch["without_version"] + sum(ours[p]["errors"] for p in PHASES)
    checks = [
        ("single rows, 8 clients >= 2x MLServer's best", rps / mlserver_rps if rps and mlserver_rps else None,
         lambda v: v >= 2),
        ("single rows, 8 clients >= 0.7x plain Flask",
         rps / value(flask, "single_8", "per_second") if rps and value(flask, "single_8", "per_second") else None,
         lambda v: v >= 0.7),
        ("1,000-row batches >= 1x MLServer's best rows/s",
         value(ours, "batch_2", "rows_per_second") / mlserver_rows
         if value(ours, "batch_2", "rows_per_second") and mlserver_rows else None, lambda v: v >= 1),
        ("p99 with 8 clients < 25 ms", value(ours, "single_8", "p99_ms"), lambda v: v < 25),
        ("deploy-to-live (example 3) < 10 s", value(ours, "deploy_to_live_seconds"), lambda v: v < 10),
        ("breach-to-rollback < 15 s", (ours.get("rollback") or {}).get("first_failure_to_recovered_seconds"),
         lambda v: v < 15),
        ("failed requests (phases + switch) == 0", failed, lambda v: v == 0),
    ]
    return [{"target": what, "measured": None if measured is None else round(measured, 3),
             "met": None if measured is None else check(measured)} for what, measured, check in checks]


def cpu_per_request(p: dict) -> float:
    """Milliseconds of CPU the server and Postgres spent on each request of a phase."""
    return (p["server_cpu"] + p["postgres_cpu"]) * p["seconds"] / p["requests"] * 1000


def show(number) -> str:
    if number is None:
        return "-"
    if isinstance(number, int):
        return f"{number:,}"
    return f"{number:,.1f}" if abs(number) >= 10 else f"{number:.2f}"


def print_report(summary: dict) -> None:
    ours, flask, mlservers = summary["modelyard"], summary["plain_flask"], summary["mlserver"]
    best, _ = best_mlserver(mlservers, "single_8", "per_second")
    theirs = mlservers.get(best) if best else None
    print(f"\n{'':40}{'Modelyard':>11}{'plain Flask':>13}{'MLServer':>10}{'ours/Flask':>12}{'ours/MLServer':>15}")
    print(f"{'':40}{'':>11}{'2 workers':>13}{best or '-':>10}")
    lines = ROWS + (("start to first prediction, s", "start_to_first_prediction_seconds", None),
                    ("idle RSS of the serving processes, MiB", "memory_idle", "rss_mib"))
    for label, key, field in lines:
        a, b, c = (value(figures, key, field) for figures in (ours, flask, theirs))
        ratio_b = show(a / b) + "x" if a is not None and b else "-"
        ratio_c = show(a / c) + "x" if a is not None and c else "-"
        print(f"{label:40}{show(a):>11}{show(b):>13}{show(c):>10}{ratio_b:>12}{ratio_c:>15}")

    print("\nMLServer by parallel_workers (the best single-row setting is compared above):")
    for name, figures in mlservers.items():
        if "error" in figures or "skipped" in figures:
            print(f"  {name:6} {figures.get('error') or figures.get('skipped')}")
            continue
        rps, p99, p50, rows_per_second, rss = (show(value(figures, key, field)) for key, field in (
            ("single_8", "per_second"), ("single_8", "p99_ms"), ("single_1", "p50_ms"), ("batch_2", "rows_per_second"),
            ("memory_idle", "rss_mib")))
        print(f"  {name:6} single 8 clients {rps:>7} req/s, p99 {p99} ms; 1 client p50 {p50} ms; "
              f"batches {rows_per_second} rows/s; idle RSS {rss} MiB")

    if "switch" in ours:
        switch, log = ours["switch"], ours["prediction_log"]
        print("\nModelyard only:")
        print(f"  stack start to admin login: {show(ours['stack_start_seconds'])} s; "
              f"idle stack RSS {show(ours['stack_memory_idle']['rss_mib'])} MiB")
        print(f"  deployment request to live, brief's example 3, idle: {show(ours['deploy_to_live_seconds'])} s; "
              f"under load (the switch below): {show(switch['deploy_to_live_seconds'])} s")
        print(f"    steps, idle: {', '.join(ours['deploy_steps'])}")
        print(f"    steps, under load: {', '.join(switch['steps'])}")
        print(f"  blue-green switch under load ({switch['clients']} clients): {switch['requests']:,} requests, "
              f"{switch['failed']} failed, {switch['without_version']} answers naming no version, "
              f"{switch['clients_back_and_forth']} clients saw a version go back; answers by version "
              f"{switch['answers_by_version']}; deployment {switch['deployment_status']}"
              + (f"; first failure: {switch['first_error']}" if switch["first_error"] else ""))
        rollback = ours["rollback"]
        print(f"  automatic rollback under load ({rollback['clients']} clients), a version failing real traffic: "
              f"{rollback['failed']:,} of {rollback['requests']:,} requests failed; first failure to answers from the "
              f"previous version {show(rollback['first_failure_to_recovered_seconds'])} s; live to rolled_back "
              f"{show(rollback['live_to_rolled_back_seconds'])} s; deployment {rollback['deployment_status']}: "
              f"{rollback['reason']}")
        print(f"    steps: {', '.join(rollback['steps'])}")
        print(f"  prediction log: {log['stored']:,} of {log['expected']:,} predicted rows stored in monitoring's "
              f"table (waited {log['seconds_waited']} s after the load)")
        for phase, what in (("single_8_bearer", "a bearer token instead of the API key"),
                            ("single_8_direct", "the API key, straight to serving's port (no nginx)")):
            p = ours[phase]
            print(f"  single row, {p['clients']} clients, {what}: {show(p['per_second'])} req/s, "
                  f"p50 {show(p['p50_ms'])} ms, p99 {show(p['p99_ms'])} ms")
        print("  serving's idle RSS by process (MiB): " + ", ".join(
            f"{label} {mib:.0f}" for label, mib in ours["memory_idle"]["rss_by_process_mib"].items()))

    print("\nTargets (Modelyard):")
    for target in summary["targets"]:
        verdict = {None: "n/a", True: "PASS", False: "FAIL"}[target["met"]]
        print(f"  {verdict:5} {target['target']:48} measured {show(target['measured'])}")

    print(f"\nCPU per phase, in cores ({os.cpu_count()} on this machine): the client processes / the server's process"
          " tree / Postgres / the rest of the machine; then the server's and Postgres's CPU per request (steadier"
          " than a rate on a shared machine)")
    for name, figures in (("Modelyard", ours), ("plain Flask", flask), *mlservers.items()):
        for phase in PHASES:
            if phase in figures:
                p = figures[phase]
                rest = max(0.0, p["machine_cpu"] - p["client_cpu"] - p["server_cpu"] - p["postgres_cpu"])
                errors = f"  {p['errors']} ERRORS, first: {p['first_error']}" if p["errors"] else ""
                print(f"  {name:11} {phase:15} {p['clients']} client(s) {p['requests']:6} requests in "
                      f"{p['seconds']:6.1f} s   {p['client_cpu']:.2f} / {p['server_cpu']:.2f} / {p['postgres_cpu']:.2f}"
                      f" / {rest:.2f}   {cpu_per_request(p):.2f} ms a request{errors}")
                busy = [f"{label} {cores:.2f}" for label, cores in p["server_cpu_by_process"].items() if cores >= 0.01]
                print(f"{'':14}server: {', '.join(busy)}")
    for name, figures in (("Modelyard", ours), ("plain Flask", flask), *mlservers.items()):
        if "error" in figures:
            print(f"\n{name} FAILED: {figures['error']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, help="single-row requests with 8 clients (default 4000; "
                                                     "a third of them with 1 client)")
    parser.add_argument("--batches", type=int, help="1,000-row requests with 2 clients (default 40)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for single rows")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 600 requests, 6 batches")
    parser.add_argument("--mlserver-venv", type=Path, default=Path("/tmp/mlserver-venv"),
                        help="MLServer's virtualenv, made if missing (default /tmp/mlserver-venv)")
    parser.add_argument("--mlserver-workers", default="0,1,2", help="parallel_workers settings to measure")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--port", type=int, default=8000, help="the stack's gateway port")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                        help="the Postgres server the throwaway database (modelyard_serving_bench) is made on")
    parser.add_argument("--json", type=Path, help="write the JSON summary here instead of to stdout's end")
    args = parser.parse_args(argv)
    defaults = {"requests": 600, "batches": 6} if args.quick else {"requests": 4_000, "batches": 40}
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="modelyard-serving-bench-"))
    config = {key: str(val) if isinstance(val, Path) else val for key, val in vars(args).items()}
    config.update({"cpus": os.cpu_count(), "load_average": os.getloadavg(), "work_dir": str(work_dir),
                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    print(f"Serving benchmark: logs in {work_dir}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
          flush=True)
    import joblib
    import skops.io

    features, rows, _ = dataset()
    models = [train(seed) for seed in (0, 1)]
    model_path = work_dir / "model.joblib"
    joblib.dump(models[0], model_path)
    plan = {"requests": args.requests, "clients": args.clients, "batches": args.batches}
    server = {"work_dir": work_dir, "rows": rows, "features": features}
    summary: dict = {"config": config, "mlserver": {}}

    print("Modelyard (make stack) ...", flush=True)
    serving = ModelyardServing(postgres=args.postgres, port=args.port, work_dir=work_dir, features=features,
                               rows=rows)
    summary["modelyard"] = run_safely(measure_modelyard, serving, [skops.io.dumps(m) for m in models], rows, **plan)
    print("plain Flask under gunicorn ...", flush=True)
    summary["plain_flask"] = run_safely(measure_peer, PlainFlask(model_path=model_path, **server), rows, **plan)
    missing = "--skip-mlserver" if args.skip_mlserver else ensure_mlserver_venv(args.mlserver_venv)
    for workers in (int(n) for n in args.mlserver_workers.split(",")):
        name = f"pw={workers}"
        if missing:
            summary["mlserver"][name] = {"skipped": missing}
            continue
        print(f"MLServer parallel_workers={workers} ...", flush=True)
        mlserver = MLServer(venv=args.mlserver_venv, model_path=model_path, parallel_workers=workers, **server)
        summary["mlserver"][name] = run_safely(measure_peer, mlserver, rows, **plan)

    summary["targets"] = targets(summary)
    print_report(summary)
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
        print(f"\nJSON summary written to {args.json}")
    else:
        print("\nJSON summary:\n" + text)
    return 1 if any("error" in figures for figures in (summary["modelyard"], summary["plain_flask"],
                                                         *summary["mlserver"].values())) else 0


if __name__ == "__main__":
    sys.exit(main())
