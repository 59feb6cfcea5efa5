"""The `modelyard` command: the platform from a terminal or a CI script, through the Python client.

Exit codes a script can rely on: 0 done; 1 failed (a training or rollout that failed, a server error,
no connection); 2 usage (a bad option, not logged in); 3 not found (404); 4 refused by the server
(400, 401, 403, 409, 422: the request is wrong for the server as it stands).
"""

from __future__ import annotations

import click
import requests

from modelyard.cli import operations, registry, server
from modelyard.client import ModelyardError, NotFound, Unauthorized

OK, FAILED, USAGE, NOT_FOUND, REFUSED = 0, 1, 2, 3, 4
REFUSALS = frozenset({400, 401, 403, 409, 422})


def exit_code(error: ModelyardError) -> int:
    if isinstance(error, NotFound):
        return NOT_FOUND
    return REFUSED if error.status in REFUSALS else FAILED


class Commands(click.Group):
    """The root group: turns the client's errors into one readable block on stderr and the exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModelyardError as error:
            hint = "\n(Log in again: modelyard login.)" if isinstance(error, Unauthorized) else ""
            click.echo(f"Error: {error.describe()}{hint}", err=True)
            ctx.exit(exit_code(error))
        except requests.ConnectionError as error:
            click.echo(f"Error: cannot reach the platform: {error}", err=True)
            ctx.exit(FAILED)
        except TimeoutError as error:  # a rollout or training still going when the command stopped following it
            click.echo(f"Error: {error}", err=True)
            ctx.exit(FAILED)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="MODELYARD_URL", help="The platform (default: the one logged in to, else "
              "http://127.0.0.1:8000).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people, json for scripts.")
@click.pass_context
def main(ctx: click.Context, url: str | None, output: str) -> None:
    """Modelyard: models, versions, training, deployment, monitoring and A/B tests."""
    ctx.obj = {"url": url, "output": output}


for group in (registry, operations, server):
    for command in group.COMMANDS:
        main.add_command(command)
