"""Where the command finds the platform and its credentials, and where `modelyard login` keeps them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from modelyard.client import Client


def config_file() -> Path:
    """The user's config file: MODELYARD_CONFIG_DIR, else the platform's per-user config dir
    (~/.config/modelyard on Linux)."""
    return Path(os.environ.get("MODELYARD_CONFIG_DIR") or click.get_app_dir("modelyard")) / "config.json"


def stored() -> dict:
    path = config_file()
    return json.loads(path.read_text()) if path.exists() else {}


def store(url: str, token: str, username: str) -> Path:
    """Keep the login for the next commands, readable by its owner only (the token is a credential)."""
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "token": token, "username": username}, out)
    return path


def client(url: str | None) -> Client:
    """A client for the command: the URL given (--url, MODELYARD_URL) or logged in to; an API key in
    MODELYARD_API_KEY, else the token `modelyard login` stored."""
    saved = stored()
    url = url or saved.get("url")
    if os.environ.get("MODELYARD_API_KEY"):
        return Client(url)
    if not saved.get("token"):
        raise click.UsageError("Not logged in: run `modelyard login`, or set MODELYARD_API_KEY.")
    return Client(url, token=saved["token"])
