"""`train`, `deploy`, `endpoints`, `drift`, `performance` and `ab`: from a trained model to live traffic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from modelyard.cli import session
from modelyard.cli.output import emit, table
from modelyard.cli.registry import json_object

TRIAL_COLUMNS = ["number", "state", "mean", "std", "params"]
DEPLOYMENT_COLUMNS = ["id", "endpoint", "environment", "version", "status", "reason"]
AB_COLUMNS = ["id", "name", "status", "model_a_id", "version_a", "model_b_id", "version_b", "traffic_split", "verdict"]


@click.command()
@click.argument("model")
@click.option("--dataset", "dataset_id", help="An uploaded dataset's id.")
@click.option("--data-path", "training_data_path", help="A CSV under the server's data root.")
@click.option("--estimator", help="random_forest (default), gradient_boosting, logistic_regression, ...")
@click.option("--strategy", type=click.Choice(["tpe", "random", "grid", "bayesian", "genetic"]))
@click.option("--max-trials", type=click.IntRange(1))
@click.option("--metric")
@click.option("--folds", "cross_validation_folds", type=click.IntRange(2))
@click.option("--request", "extra", callback=json_object,
              help="More of the training request as a JSON object (splits, preprocessing, augmentation ...).")
@click.option("--top", default=5, show_default=True, help="How many of the best trials to show.")
@click.pass_context
def train(ctx, model, strategy, metric, extra, top, **fields) -> None:
    """Train a model: a live progress bar of its trials, then the best trials."""
    request = {key: value for key, value in fields.items() if value is not None}
    optimization = {key: value for key, value in (("strategy", strategy), ("metric", metric)) if value}
    if optimization:
        request["optimization"] = optimization
    request.update(extra or {})
    client = session.client(ctx.obj["url"])
    run = client.trainings.start(model, **request)
    job = run.wait(progress=True)
    best = run.best_trials(top)
    if ctx.obj["output"] == "json":
        click.echo(json.dumps({"training": job.raw, "best_trials": [trial.raw for trial in best]}, indent=2))
        return
    click.echo(f"training {job.id} {job.status}: best {job.metric} {job.best_value:.4g}, "
               f"version {job.version_number} registered")
    click.echo(table([{column: getattr(trial, column) for column in TRIAL_COLUMNS} for trial in best], TRIAL_COLUMNS))


@click.command()
@click.argument("model")
@click.option("--environment", "-e", type=click.Choice(["development", "staging", "production"]), required=True)
@click.option("--version", type=click.IntRange(1), help="Default: the champion alias's version, else the latest.")
@click.option("--strategy", type=click.Choice(["blue_green", "canary"]))
@click.option("--config", "configs", callback=json_object,
              help="The request's configs as a JSON object (deployment_config, health_check_config, "
                   "scaling_config, monitoring_config, canary).")
@click.option("--timeout", default=300, show_default=True, help="Seconds to follow the rollout.")
@click.pass_context
def deploy(ctx, model, environment, version, strategy, configs, timeout) -> None:
    """Deploy a version and follow its rollout to live (exit 0) or failure or rollback (exit 1)."""
    body = dict(configs or {})
    if strategy:
        body["strategy"] = strategy
    client = session.client(ctx.obj["url"])
    deployment = client.deployments.deploy(model, environment, version=version, **body)
    click.echo(f"deployment {deployment.id}: version {deployment.version} to {deployment.endpoint}", err=True)
    for step in client.deployments.follow(deployment.id, timeout=timeout):
        click.echo(f"  {step.status}" + (f": {step.reason}" if step.reason else ""), err=True)
    emit(ctx, step, DEPLOYMENT_COLUMNS)
    if step.status != "live":
        ctx.exit(1)


@click.group()
def endpoints() -> None:
    """Endpoints: list them, predict with one."""


@endpoints.command("ls")
@click.pass_context
def endpoints_ls(ctx) -> None:
    emit(ctx, list(session.client(ctx.obj["url"]).endpoints.list()),
         ["name", "environment", "live_version", "candidate_version"])


@endpoints.command("predict")
@click.argument("name")
@click.argument("rows", type=click.File("r"))
@click.option("--format", "format_", type=click.Choice(["csv", "jsonl"]),
              help="Default: by the file's extension (.csv, else JSON lines).")
@click.pass_context
def endpoints_predict(ctx, name, rows, format_) -> None:
    """Predict the rows of a CSV file or JSON lines (one object a line; `-` reads stdin)."""
    format_ = format_ or ("csv" if Path(rows.name).suffix.lower() == ".csv" else "jsonl")
    instances = read_csv(rows) if format_ == "csv" else read_json_lines(rows)
    answer = session.client(ctx.obj["url"]).endpoints.predict(name, instances)
    if ctx.obj["output"] == "json":
        click.echo(json.dumps(answer.raw, indent=2))
        return
    probabilities = answer.probabilities or [None] * len(answer.predictions)
    click.echo(table([{"request_id": request_id, "prediction": prediction, "probabilities": probability}
                      for request_id, prediction, probability
                      in zip(answer.request_ids, answer.predictions, probabilities)],
                     ["request_id", "prediction", "probabilities"]))
    click.echo(f"model {answer.model_id} version {answer.model_version}", err=True)


def read_csv(handle) -> list[dict]:
    """CSV rows with numbers as numbers (the server wants numeric features as JSON numbers), empty cells null."""
    return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _number(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_json_lines(handle) -> list[dict]:
    rows = []
    for number, line in enumerate(handle, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise click.BadParameter(f"line {number} is not JSON: {exc}", param_hint="ROWS") from exc
    return rows


@click.command()
@click.argument("model")
@click.option("--hours", type=click.IntRange(1), help="The window of predictions (default: the server's, 24).")
@click.option("--version", type=click.IntRange(1))
@click.option("--refresh", is_flag=True, help="Compute a new report rather than a fresh stored one.")
@click.pass_context
def drift(ctx, model, hours, version, refresh) -> None:
    """The drift of a model's recent predictions from its training data, feature by feature."""
    report = session.client(ctx.obj["url"]).models.drift(model, hours=hours, version=version, refresh=refresh or None)
    if ctx.obj["output"] == "json":
        click.echo(json.dumps(report.raw, indent=2))
        return
    click.echo(f"model {report.model_id} version {report.version}: drift score {report.overall_drift_score:.3g}, "
               f"severity {report.severity}, {report.window.get('rows')} predictions")
    columns = ["name", "test", "statistic", "p_value", "psi", "drifted"]
    click.echo(table(report.features, columns))


@click.command()
@click.argument("model")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366))
@click.option("--version", type=click.IntRange(1))
@click.pass_context
def performance(ctx, model, days, version) -> None:
    """A model's predictions over the last days: counts, latency, error rate, scores against actuals."""
    found = session.client(ctx.obj["url"]).models.performance(model, days, version=version)
    if ctx.obj["output"] == "json":
        click.echo(json.dumps(found.raw, indent=2))
        return
    click.echo(table([{"figure": key, "value": value} for key, value in sorted(found.summary.items())],
                     ["figure", "value"], header=False))


@click.group()
def ab() -> None:
    """A/B tests: create, start, results."""


@ab.command("create")
@click.option("--name", required=True)
@click.option("--model-a", required=True, help="The model live now (id or name).")
@click.option("--model-b", required=True, help="The challenger (id or name).")
@click.option("--split", "traffic_split", type=click.FloatRange(0, 1), help="B's share of the units.")
@click.option("--success-metric", "success_metrics", multiple=True, help="Repeat for each.")
@click.option("--guardrail-metric", "guardrail_metrics", multiple=True, help="Repeat for each.")
@click.option("--min-sample-size", type=click.IntRange(1))
@click.option("--definition", callback=json_object, help="More of the test's definition as a JSON object.")
@click.pass_context
def ab_create(ctx, name, model_a, model_b, definition, **fields) -> None:
    """Define an A/B test (in draft)."""
    client = session.client(ctx.obj["url"])
    body = {key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()
            if value not in (None, ())}
    body.update(definition or {})
    test = client.ab_tests.create(name, client.models.get(model_a).id, client.models.get(model_b).id, **body)
    emit(ctx, test, AB_COLUMNS)


@ab.command("start")
@click.argument("test_id")
@click.pass_context
def ab_start(ctx, test_id) -> None:
    """Start a draft test on model A's endpoint."""
    emit(ctx, session.client(ctx.obj["url"]).ab_tests.start(test_id), AB_COLUMNS)


@ab.command("results")
@click.argument("test_id")
@click.pass_context
def ab_results(ctx, test_id) -> None:
    """The test's latest figures and decision."""
    results = session.client(ctx.obj["url"]).ab_tests.results(test_id)
    if ctx.obj["output"] == "json":
        click.echo(json.dumps(results.raw, indent=2))
        return
    units = results.units or {}
    click.echo(f"units: A {units.get('A')}, B {units.get('B')}"
               + (" (insufficient data)" if results.insufficient_data else ""))
    columns = ["name", "role", "estimate_a", "estimate_b", "difference", "p_value", "status"]
    click.echo(table(results.metrics or [], columns))
    if results.decision:
        click.echo(f"decision: {results.decision.get('verdict')}: {results.decision.get('summary')}")


COMMANDS = [train, deploy, endpoints, drift, performance, ab]
