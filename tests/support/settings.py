"""Settings for a platform under test: the run's real servers and names, files under one root."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any


def platform_settings(database_url: str, servers: dict[str, str], root: Path, run_id: str) -> dict[str, Any]:
    return {
        "env": "testing",
        "database_url": database_url,
        "broker_url": servers["BROKER"],
        "events_url": servers["BROKER"],
        "events_exchange": f"modelyard.events.test.{run_id}",
        "redis_url": servers["REDIS"],
        # Each platform its own: its cached entries and throttle counts (failed logins) never meet another's.
        "cache_prefix": f"modelyard-test-{run_id}-{uuid.uuid4().hex[:8]}:",
        "artifact_root": str(root / "artifacts"),
        "artifact_keys": "k1:" + "A" * 43 + "=",
        "data_root": str(root / "data"),
        "jwt_secret": "test-secret-" + run_id + "-0123456789abcdef",
        "feature_hash_key": "test-feature-hash-key-" + run_id,
        # Rollouts at test speed: replicas poll twice a second, switches are written a second ahead.
        "replica_poll_seconds": 0.5,
        "switch_ahead_seconds": 1.0,
    }
