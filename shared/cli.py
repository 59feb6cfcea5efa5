"""The `modelyard` command: operator tasks that need no running server."""

from __future__ import annotations

import argparse
import json
import sys

from shared.config import ConfigError, load_settings
from shared.schema import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelyard")
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="settings").add_subparsers(dest="action", required=True)
    config.add_parser("show", help="print the effective settings, secrets masked")
    commands.add_parser("migrate", help="bring the database to the newest schema")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
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
