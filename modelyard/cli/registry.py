"""`models`, `versions` and `datasets`: the registry from the command line."""

from __future__ import annotations

import json

import click

from modelyard.cli import session
from modelyard.cli.output import emit

MODEL_COLUMNS = ["id", "name", "type", "status", "latest_version", "aliases"]
VERSION_COLUMNS = ["number", "status", "provenance", "format", "metrics", "aliases"]


def json_object(ctx, param, value):
    """A JSON object given on the command line, else a usage error naming the option."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object")
    return parsed


@click.group()
def models() -> None:
    """Models: list, create, show, archive."""


@models.command("ls")
@click.option("--q", help="Text the name or description holds.")
@click.option("--type", "type_")
@click.option("--status")
@click.pass_context
def models_ls(ctx, q, type_, status) -> None:
    """List models, newest first."""
    found = session.client(ctx.obj["url"]).models.list(q=q, type=type_, status=status)
    emit(ctx, list(found), MODEL_COLUMNS)


@models.command("create")
@click.argument("name")
@click.option("--type", "type_", required=True, help="classification, regression, ...")
@click.option("--framework", default="scikit_learn", show_default=True)
@click.option("--description")
@click.option("--feature", "features", multiple=True, help="A feature's name; repeat for each.")
@click.option("--target", "target_variable")
@click.option("--hyperparameters", callback=json_object, help="A JSON object.")
@click.option("--metadata", callback=json_object, help="A JSON object.")
@click.pass_context
def models_create(ctx, name, type_, framework, **fields) -> None:
    """Register a model."""
    given = {key: value for key, value in fields.items() if value not in (None, ())}
    if "features" in given:
        given["features"] = list(given["features"])
    model = session.client(ctx.obj["url"]).models.create(name, type=type_, framework=framework, **given)
    emit(ctx, model, MODEL_COLUMNS)


@models.command("show")
@click.argument("model")
@click.pass_context
def models_show(ctx, model) -> None:
    """A model by id or name."""
    emit(ctx, session.client(ctx.obj["url"]).models.get(model),
         MODEL_COLUMNS + ["framework", "description", "features", "target_variable", "hyperparameters", "created_at"])


@models.command("archive")
@click.argument("model")
@click.pass_context
def models_archive(ctx, model) -> None:
    """Archive a model: it takes no new versions."""
    emit(ctx, session.client(ctx.obj["url"]).models.archive(model), MODEL_COLUMNS)


@click.group()
def versions() -> None:
    """A model's versions: list, upload, download."""


@versions.command("ls")
@click.argument("model")
@click.pass_context
def versions_ls(ctx, model) -> None:
    emit(ctx, list(session.client(ctx.obj["url"]).versions.list(model)), VERSION_COLUMNS)


@versions.command("upload")
@click.argument("model")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--metadata", callback=json_object,
              help='A JSON object: {"description", "parameters", "metrics", "dataset_id", ...}.')
@click.pass_context
def versions_upload(ctx, model, path, metadata) -> None:
    """Upload a model file as the model's next version."""
    emit(ctx, session.client(ctx.obj["url"]).versions.upload(model, path, metadata), VERSION_COLUMNS)


@versions.command("download")
@click.argument("model")
@click.argument("version", default="latest")
@click.option("--to", type=click.Path(), default=".", show_default=True, help="A directory or a file name.")
@click.pass_context
def versions_download(ctx, model, version, to) -> None:
    """Save a version's artifact (default: the latest)."""
    click.echo(session.client(ctx.obj["url"]).versions.download(model, version, to))


@click.group()
def datasets() -> None:
    """Datasets."""


@datasets.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name")
@click.option("--description")
@click.pass_context
def datasets_upload(ctx, path, name, description) -> None:
    """Upload a CSV."""
    dataset = session.client(ctx.obj["url"]).datasets.upload(path, name=name, description=description)
    emit(ctx, dataset, ["id", "name", "rows", "columns", "sha256"])


COMMANDS = [models, versions, datasets]
