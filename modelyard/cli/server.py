"""Commands about the platform itself: logging in, users, and the operator's `config show` and `migrate`
(these two read the server's settings and need no running server)."""

from __future__ import annotations

import json
import os

import click

from modelyard.cli import session
from modelyard.cli.output import emit
from modelyard.client import Client


@click.command()
@click.option("--username", "-u", prompt=True, help="Your user name.")
@click.password_option("--password", "-p", envvar="MODELYARD_PASSWORD", confirmation_prompt=False,
                       help="Prompted for unless given (or in MODELYARD_PASSWORD).")
@click.pass_context
def login(ctx: click.Context, username: str, password: str) -> None:
    """Log in and keep the token in your config dir for the next commands (it lasts an hour)."""
    client = Client(ctx.obj["url"] or session.stored().get("url"), username=username, password=password)
    path = session.store(client.url, client.http.token, username)
    click.echo(f"Logged in to {client.url} as {username} (token kept in {path}).")


@click.group()
def admin() -> None:
    """Administration (admin role)."""


@admin.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "data_scientist", "ml_engineer", "admin"]), default="viewer",
              show_default=True)
@click.password_option("--password", envvar="MODELYARD_NEW_USER_PASSWORD",
                       help="At least 8 characters; prompted for (twice) unless given.")
@click.pass_context
def create_user(ctx: click.Context, username: str, role: str, password: str) -> None:
    """Create a user."""
    user = session.client(ctx.obj["url"]).create_user(username, password, role)
    emit(ctx, user, ["id", "username", "role", "is_active"])


@click.group()
def config() -> None:
    """The server's settings."""


@config.command("show")
def config_show() -> None:
    """Print the effective settings of a server started here, secrets masked."""
    click.echo(json.dumps(_server_settings().masked(), indent=2))


@click.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    from shared.migrate import migrate as upgrade

    upgrade(_server_settings().database_url)


def _server_settings():
    # The server's code is imported here only: the client commands stay free of Flask and SQLAlchemy.
    from shared.config import ConfigError, load_settings, stored_secrets

    try:
        # As `make run` and `make stack` start: the secrets they generated fill in those the environment lacks.
        environ = {**stored_secrets(load_settings().var_dir), **{k: v for k, v in os.environ.items() if v}}
        return load_settings(environ=environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


COMMANDS = [login, admin, config, migrate]
