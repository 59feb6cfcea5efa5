"""`python -m launch.openapi PATH`: write the platform's one API document, every service's routes in it.

It is the all-in-one app's document (what `make run` serves at /api/v1/openapi.json), built without
touching any server; the gateway serves the file under `make stack`, docker-compose and k8s.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from launch.apps import create_app


def document() -> dict:
    with tempfile.TemporaryDirectory() as var_dir:
        # Settings that need no server: nothing connects while the document is built.
        app = create_app({"env": "development", "var_dir": var_dir, "database_url": "sqlite://",
                          "broker_url": "memory://", "redis_url": "", "jwt_secret": "unused"})
        return app.test_client().get("/api/v1/openapi.json").get_json()


def write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m launch.openapi PATH", file=sys.stderr)
        return 2
    write(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
