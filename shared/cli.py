"""The `modelyard` command: operator tasks that need no running server."""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.config import ConfigError, load_settings, stored_secrets
from shared.migrate import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelyard")
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="settings").add_subparsers(dest="action", required=True)
    config.add_parser("show", help="print the effective settings, secrets masked")
    commands.add_parser("migrate", help="bring the database to the newest schema")
    args = parser.parse_args(argv)
    try:
        # As `make run` and `make stack` start: the secrets they generated fill in those the environment lacks.
        environ = {**stored_secrets(load_settings().var_dir), **{k: v for k, v in os.environ.items() if v}}
        settings = load_settings(environ=environ)
    except ConfigError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(settings.masked(), indent=2))
    elif args.command == "migrate":
        migrate(settings.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
