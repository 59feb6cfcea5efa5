"""Settings: profiles, environment variables, and production's refusal to start without secrets."""

import json

import pytest

from shared.config import ConfigError, load_settings


def test_environment_variables_are_typed_and_override_defaults():
    settings = load_settings(environ={"MODELYARD_JWT_EXPIRES_SECONDS": "42", "MODELYARD_RELAY_POLL_SECONDS": "0.5"})
    assert settings.jwt_expires_seconds == 42
    assert settings.relay_poll_seconds == 0.5


def test_embedded_default_keeps_everything_under_the_var_dir():
    settings = load_settings(environ={"MODELYARD_VAR_DIR": "/tmp/x"})
    assert settings.database_url == "sqlite:////tmp/x/modelyard.db"
    assert settings.broker_url == "sqla+sqlite:////tmp/x/broker.db"
    assert settings.artifact_root == "/tmp/x/artifacts"


def test_production_refuses_to_start_without_jwt_secret_artifact_key_and_feature_hash_key():
    with pytest.raises(ConfigError, match="MODELYARD_JWT_SECRET, MODELYARD_ARTIFACT_KEYS, MODELYARD_FEATURE_HASH_KEY$"):
        load_settings(environ={"MODELYARD_ENV": "production"})
    with pytest.raises(ConfigError, match="without MODELYARD_FEATURE_HASH_KEY$"):
        load_settings(environ={"MODELYARD_ENV": "production", "MODELYARD_JWT_SECRET": "s",
                               "MODELYARD_ARTIFACT_KEYS": "k:" + "A" * 43 + "="})


def test_production_starts_with_its_three_secrets():
    settings = load_settings(environ={"MODELYARD_ENV": "production", "MODELYARD_JWT_SECRET": "s",
                                      "MODELYARD_ARTIFACT_KEYS": "k:" + "A" * 43 + "=",
                                      "MODELYARD_FEATURE_HASH_KEY": "h"})
    assert settings.env == "production"


def test_unknown_profile_and_bad_numbers_are_refused():
    with pytest.raises(ConfigError, match="MODELYARD_ENV"):
        load_settings(environ={"MODELYARD_ENV": "staging"})
    with pytest.raises(ConfigError, match="MODELYARD_MAX_JSON_BYTES"):
        load_settings(environ={"MODELYARD_MAX_JSON_BYTES": "lots"})


def test_masked_settings_hide_secrets_and_url_passwords():
    shown = load_settings(environ={"MODELYARD_JWT_SECRET": "topsecret",
                                   "MODELYARD_DATABASE_URL": "postgresql://me:pw@db:5432/x"}).masked()
    assert shown["jwt_secret"] == "********"
    assert shown["database_url"] == "postgresql://****@db:5432/x"
    assert "pw" not in str(shown)


def test_config_show_says_the_secrets_make_run_generated_are_set_without_printing_them(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from launch.processes import local_secrets
    from modelyard.cli import main

    for name in ("MODELYARD_JWT_SECRET", "MODELYARD_ARTIFACT_KEYS", "MODELYARD_FEATURE_HASH_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELYARD_VAR_DIR", str(tmp_path))
    generated = local_secrets(load_settings())  # what make run does before it starts anything
    done = CliRunner().invoke(main, ["config", "show"])
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output)
    assert shown["jwt_secret"] == shown["artifact_keys"] == shown["feature_hash_key"] == "********"
    assert not any(secret in json.dumps(shown) for secret in generated.values())
    assert shown["bind"] == "127.0.0.1:8000"


def test_a_var_dir_made_before_the_feature_hash_key_gets_one_and_keeps_its_other_secrets(tmp_path, monkeypatch):
    from launch.processes import local_secrets
    from shared.config import SECRETS_FILE, stored_secrets

    for name in ("MODELYARD_JWT_SECRET", "MODELYARD_ARTIFACT_KEYS", "MODELYARD_FEATURE_HASH_KEY"):
        monkeypatch.delenv(name, raising=False)
    older = {"MODELYARD_JWT_SECRET": "old-jwt", "MODELYARD_ARTIFACT_KEYS": "local1:" + "B" * 43 + "="}
    (tmp_path / SECRETS_FILE).write_text(json.dumps(older))
    settings = load_settings(environ={"MODELYARD_VAR_DIR": str(tmp_path)})
    first = local_secrets(settings)
    assert {name: first[name] for name in older} == older and len(first["MODELYARD_FEATURE_HASH_KEY"]) >= 32
    assert local_secrets(settings) == first == stored_secrets(str(tmp_path))  # made once, then read
    assert (tmp_path / SECRETS_FILE).stat().st_mode & 0o777 == 0o600


def test_migrate_builds_the_schema_of_the_configured_database(tmp_path, monkeypatch):
    import sqlite3

    from click.testing import CliRunner

    from modelyard.cli import main

    monkeypatch.setenv("MODELYARD_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("MODELYARD_DATABASE_URL", raising=False)
    done = CliRunner().invoke(main, ["migrate"])
    assert done.exit_code == 0, done.output
    with sqlite3.connect(tmp_path / "modelyard.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"models", "model_versions", "alembic_version"} <= tables


def test_config_show_refuses_a_bad_setting_as_a_usage_error(monkeypatch):
    from click.testing import CliRunner

    from modelyard.cli import main

    monkeypatch.setenv("MODELYARD_ENV", "staging")
    done = CliRunner().invoke(main, ["config", "show"])
    assert done.exit_code == 2 and "MODELYARD_ENV must be one of" in done.output
