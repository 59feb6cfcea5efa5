"""`python -m launch.events relay|consume`: the outbox relay, or the event consumers, for every
consumer the services' manifests declare (docker-compose, k8s and `make stack` run these)."""

from __future__ import annotations

import sys

from launch import catalog
from shared.events import relay, runner


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["relay"], ["consume"]):
        print("usage: python -m launch.events relay|consume", file=sys.stderr)
        return 2
    if args == ["relay"]:
        # The relay declares the consumers' queues before its first publish, so no event is missed at start.
        return relay.main([arg for path in catalog.consumers() for arg in ("--consumer", path)])
    return runner.main(list(catalog.consumers()))


if __name__ == "__main__":
    sys.exit(main())
