"""Typed settings read once from defaults, the profile and `MODELYARD_*` environment variables.

Nothing here runs at import: call `load_settings()` (or pass a dict in tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

PROFILES = ("development", "testing", "production")
SECRET_FIELDS = {"jwt_secret", "artifact_keys", "feature_hash_key", "admin_password", "metrics_token"}
# Where `make run` and `make stack` keep the secrets they generate for a development machine.
SECRETS_FILE = "secrets.json"


class ConfigError(RuntimeError):
    """The settings cannot start the platform (missing secret, bad value)."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    # Where `make run` listens.
    bind: str = "127.0.0.1:8000"
    # Where state lives. Left empty, each is a file under var_dir: the embedded default needs no server.
    var_dir: str = "var"
    database_url: str = ""
    broker_url: str = ""
    # Events: "amqp://..." publishes to RabbitMQ; "local" dispatches to in-process subscribers.
    events_url: str = "local"
    events_exchange: str = "modelyard.events"
    redis_url: str = ""  # empty: in-process cache
    cache_prefix: str = "modelyard:"
    cache_ttl_seconds: int = 300
    artifact_root: str = ""
    # "kid:base64key,kid2:base64key"; the first is current, the rest still decrypt.
    artifact_keys: str = ""
    data_root: str = ""
    # The HMAC key monitoring hashes models' sensitive categorical feature values with
    # (services/monitoring/sensitive.py). Changing it changes every hash: values stored before no longer
    # match the reference's. Empty outside production: a fixed development key.
    feature_hash_key: str = ""
    jwt_secret: str = ""
    jwt_expires_seconds: int = 3600
    # Every token names who issued it and for whom; a token naming anyone else is refused.
    jwt_issuer: str = "modelyard"
    jwt_audience: str = "modelyard-api"
    max_json_bytes: int = 1 << 20
    max_upload_bytes: int = 2 << 30
    # Accept pickle and joblib artifacts (which run code when loaded): for a trusted environment only.
    allow_pickle: bool = False
    # Columns a CSV may have (uploaded datasets, training data files): its header is read before any row.
    max_csv_columns: int = 10_000
    admin_username: str = "admin"
    admin_password: str = ""
    relay_batch_size: int = 200
    relay_poll_seconds: float = 0.2
    consumer_max_retries: int = 3
    # Celery queue names get this prefix: isolates test runs sharing one broker; empty in production.
    task_queue_prefix: str = ""
    # Training: trials in flight per job by default (the worker processes of the HPO pool), where the
    # registry answers (empty: in-process, the all-in-one composition), and the code version recorded.
    hpo_parallelism: int = 2
    registry_url: str = ""
    # Where serving replicas read the desired state (empty: in process, the all-in-one composition), and
    # the most rows one prediction request may carry.
    deployment_url: str = ""
    # Where the dashboards' sign-in checks a password (identity's token endpoint; empty: in process).
    identity_url: str = ""
    # The dashboards' session cookie is sent over HTTPS only (a gateway serving plain HTTP, as `make run`
    # and `make stack` do, needs it off); on in production.
    dashboard_cookie_secure: bool = False
    max_predict_rows: int = 10_000
    # The most prediction records one POST /api/v1/monitoring/predictions may carry.
    max_ingest_records: int = 10_000
    # Drift: a stored report younger than drift_fresh_seconds answers GET .../drift; beat's sweep
    # recomputes older ones, over the last drift_window_hours of each served version's predictions.
    drift_fresh_seconds: int = 900
    drift_window_hours: int = 24
    # Predictions (and actuals, recorded metrics, drift reports, anomalies) older than this many days
    # are deleted by beat's hourly maintenance; on Postgres a day's partition is dropped whole.
    prediction_retention_days: int = 90
    # Alert webhooks may reach loopback, private and link-local addresses (a trusted network, tests);
    # off, such a URL is refused when a rule is saved and again when sending.
    webhook_allow_private: bool = False
    # Replicas poll each endpoint's desired state this often (and hear of changes at once by event); a
    # planned traffic switch is written this far ahead, longer than a poll, so every replica switches at
    # the same instant even if it missed the event.
    replica_poll_seconds: float = 2.0
    switch_ahead_seconds: float = 3.0
    # The image an endpoint's serving pool runs in the Kubernetes manifests the deployment service renders.
    serving_image: str = "modelyard:latest"
    code_version: str = ""
    log_level: str = "INFO"
    # /metrics answers an admin, or a scraper sending `Authorization: Bearer <metrics_token>`; anyone only
    # when metrics_public is set (a private network where whoever reaches the port may read it).
    metrics_token: str = ""
    metrics_public: bool = False
    # Throttling (limits as "N per <period>"; empty turns one off). Failed logins per user name and per
    # client address: past either, every login for that name or address is 429 until the window ends.
    # Requests per principal (a user with all their keys): off by default, as a benchmark's 8 clients
    # of one user make ~1,500 writes/s, and an operator knows their clients' rates, e.g. "50 per second".
    login_failures_per_user: str = "10 per 15 minutes"
    login_failures_per_address: str = "100 per 15 minutes"
    requests_per_principal: str = ""
    # Reverse proxies in front of the services that append the client's address to X-Forwarded-For
    # (the gateway's nginx: 1); 0 trusts no such header, so a direct client cannot pick its own address.
    proxy_hops: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def task_queue(self, pool: str) -> str:
        """The Celery queue name of worker pool `pool` ("hpo", "default" ...)."""
        return self.task_queue_prefix + pool

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets hidden, for `modelyard config show`."""
        shown = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "********"
            elif f.name.endswith("_url") and "@" in str(value):
                scheme, _, rest = str(value).partition("://")
                value = f"{scheme}://****@{rest.rsplit('@', 1)[1]}"
            shown[f.name] = value
        shown.pop("extra")
        return shown


def stored_secrets(var_dir: str) -> dict[str, str]:
    """The secrets generated into the var dir's secrets file, by their MODELYARD_* names; none yet: {}."""
    path = Path(var_dir) / SECRETS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "development": {},
    "testing": {"jwt_expires_seconds": 600, "max_upload_bytes": 64 << 20},
    "production": {"dashboard_cookie_secure": True},
}


def _coerce(raw: str, target: Any) -> Any:
    if isinstance(target, bool):
        return raw.lower() in {"1", "true", "yes", "on"}
    if isinstance(target, int):
        return int(raw)
    if isinstance(target, float):
        return float(raw)
    return raw


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the profile's, then `MODELYARD_*` variables, then `overrides`."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    env = overrides.get("env") or environ.get("MODELYARD_ENV", "development")
    if env not in PROFILES:
        raise ConfigError(f"MODELYARD_ENV must be one of {', '.join(PROFILES)}, not {env!r}")
    base = Settings()
    values: dict[str, Any] = {"env": env, **_PROFILE_DEFAULTS[env]}
    for f in fields(Settings):
        if f.name in {"env", "extra"}:
            continue
        raw = environ.get(f"MODELYARD_{f.name.upper()}")
        if raw is not None:
            try:
                values[f.name] = _coerce(raw, getattr(base, f.name))
            except ValueError as exc:
                raise ConfigError(f"MODELYARD_{f.name.upper()}: {exc}") from exc
    values.update(overrides)
    var_dir = values.get("var_dir", base.var_dir)
    embedded = {
        "database_url": f"sqlite:///{var_dir}/modelyard.db",
        "broker_url": f"sqla+sqlite:///{var_dir}/broker.db",
        "artifact_root": f"{var_dir}/artifacts",
        "data_root": f"{var_dir}/data",
    }
    for name, default in embedded.items():
        values[name] = values.get(name) or default
    settings = dataclasses.replace(base, **values)
    if settings.prediction_retention_days < 1:  # 0 would drop today's predictions as they arrive
        raise ConfigError("MODELYARD_PREDICTION_RETENTION_DAYS: at least 1 day")
    if settings.env == "production":
        missing = [name for name in ("jwt_secret", "artifact_keys", "feature_hash_key")
                   if not getattr(settings, name)]
        if missing:
            raise ConfigError(
                "production refuses to start without "
                + ", ".join(f"MODELYARD_{name.upper()}" for name in missing)
            )
    return settings
