"""Alembic is the only source of schema: the migrations build exactly what the models describe."""

import json
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from launch.catalog import import_all_tables
from shared.db import Base, make_engine
from shared.migrate import alembic_config, migrate

pytestmark = pytest.mark.integration


def _differences(url: str) -> list:
    import_all_tables()
    engine = make_engine(url)
    with engine.connect() as conn:
        # A partition is part of its table, which the models describe, not a table of its own.
        partitions = set(conn.scalars(sa.text("SELECT inhrelid::regclass::text FROM pg_inherits")).all()) \
            if conn.dialect.name == "postgresql" else set()
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "render_as_batch": conn.dialect.name == "sqlite",
            "include_name": lambda name, kind, parent: kind != "table" or name not in partitions})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


def test_models_and_migrations_agree(database_url):  # on Postgres and on the embedded SQLite
    assert _differences(database_url) == []


def test_the_history_downgrades_to_nothing_and_back(tmp_path):
    url = f"sqlite:///{tmp_path}/roundtrip.db"
    migrate(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
    migrate(url)


def test_downgrading_and_upgrading_the_embedded_sqlite_keeps_every_row(tmp_path):
    # SQLite alters a table by rebuilding it; with foreign keys on, dropping the old copy of `models`
    # would cascade to every version and alias.
    url = f"sqlite:///{tmp_path}/kept.db"
    migrate(url)
    engine = make_engine(url)
    model_id, version_id = uuid.uuid4().hex, uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO models (id, name, description, type, framework, status, hyperparameters, features, tags,"
            " metadata, created_by, latest_version, version_counter, created_at, updated_at) VALUES (:id, 'm', '',"
            " 'classification', 'custom', 'trained', '{}', '[]', '{}', '{}', 'me', 1, 1, '2026-01-01', '2026-01-01')"),
            {"id": model_id})
        conn.execute(sa.text(
            "INSERT INTO model_versions (id, model_id, number, artifact_sha256, size, provenance, status, description,"
            " parameters, metrics, tags, created_by, created_at) VALUES (:id, :model, 1, :sha, 1, 'uploaded', 'ready',"
            " '', '{}', '{}', '{}', 'me', '2026-01-01')"), {"id": version_id, "model": model_id, "sha": "0" * 64})
        conn.execute(sa.text("INSERT INTO model_aliases (model_id, alias, version, updated_at)"
                             " VALUES (:model, 'champion', 1, '2026-01-01')"), {"model": model_id})
    engine.dispose()

    def counts() -> tuple[int, int, int]:
        engine = make_engine(url)
        with engine.connect() as conn:
            found = tuple(conn.scalar(sa.text(f"SELECT count(*) FROM {table}"))
                          for table in ("models", "model_versions", "model_aliases"))
        engine.dispose()
        return found

    command.downgrade(alembic_config(url), "0005")
    assert counts() == (1, 1, 1)
    migrate(url)
    assert counts() == (1, 1, 1)
    assert _differences(url) == []


def test_versions_from_before_artifact_checks_are_unknown_unless_the_platform_trained_them(tmp_path):
    url = f"sqlite:///{tmp_path}/formats.db"
    migrate(url)
    command.downgrade(alembic_config(url), "0006")
    engine = make_engine(url)
    model_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO models (id, name, description, type, framework, status, hyperparameters, features, tags,"
            " metadata, created_by, latest_version, version_counter, created_at, updated_at) VALUES (:id, 'm', '',"
            " 'classification', 'custom', 'trained', '{}', '[]', '{}', '{}', 'me', 2, 2, '2026-01-01', '2026-01-01')"),
            {"id": model_id})
        for number, provenance in ((1, "uploaded"), (2, "trained")):
            conn.execute(sa.text(
                "INSERT INTO model_versions (id, model_id, number, artifact_sha256, size, artifact_filename, provenance,"
                " status, description, parameters, metrics, tags, created_by, created_at) VALUES (:id, :model,"
                " :number, :sha, 1, 'model.skops', :provenance, 'ready', '', '{}', '{}', '{}', 'me', '2026-01-01')"),
                {"id": uuid.uuid4().hex, "model": model_id, "number": number, "sha": "0" * 64,
                 "provenance": provenance})
    engine.dispose()
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT number, format, loadable FROM model_versions ORDER BY number")).all()
    engine.dispose()
    # A name proves nothing (a pickle renamed .skops): an uploaded version stays unknown.
    assert [tuple(row) for row in found] == [(1, None, None), (2, "skops", 1)]


def test_versions_from_before_monitorings_baselines_get_one_and_a_new_platform_has_the_briefs_alert_rules(tmp_path):
    url = f"sqlite:///{tmp_path}/baselines.db"
    migrate(url)
    command.downgrade(alembic_config(url), "0014")
    engine = make_engine(url)
    model_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO models (id, name, description, type, framework, status, hyperparameters, features, tags,"
            " metadata, created_by, latest_version, version_counter, created_at, updated_at) VALUES (:id, 'm', '',"
            " 'regression', 'scikit_learn', 'trained', '{}', '[]', '{}', '{}', 'me', 1, 1, '2026-01-01', '2026-01-01')"),
            {"id": model_id.hex})
        conn.execute(sa.text(
            "INSERT INTO model_versions (id, model_id, number, artifact_sha256, size, artifact_filename, provenance,"
            " status, description, parameters, metrics, tags, profile, reference_sha256, reference_rows, created_by,"
            " created_at, format, loadable) VALUES (:id, :model, 1, :sha, 1, 'model.skops', 'trained', 'ready', '',"
            " '{}', :metrics, '{}', :profile, :sha, 40, 'me', '2026-01-01', 'skops', 1)"),
            {"id": uuid.uuid4().hex, "model": model_id.hex, "sha": "1" * 64, "metrics": '{"test_rmse": 2.5}',
             "profile": '{"features": {"age": {"kind": "numeric"}, "plan": {"kind": "categorical"}}}'})
    engine.dispose()
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        baseline = conn.execute(sa.text("SELECT model_type, reference_sha256, reference_rows, feature_kinds, metrics"
                                        " FROM version_baselines")).one()
        rules = conn.execute(sa.text("SELECT metric, threshold, model_id FROM alert_rules ORDER BY metric")).all()
    engine.dispose()
    assert tuple(baseline[:3]) == ("regression", "1" * 64, 40)
    assert (json.loads(baseline[3]), json.loads(baseline[4])) == ({"age": "numeric", "plan": "categorical"},
                                                                  {"test_rmse": 2.5})
    assert [tuple(rule) for rule in rules] == [("cpu_percent", 80.0, None), ("drift_score", 0.2, None),
                                               ("error_rate", 5.0, None), ("memory_percent", 80.0, None),
                                               ("performance_degradation", 10.0, None)]


def test_existing_models_have_no_sensitive_features_and_monitoring_gets_their_versions_bin_edges(tmp_path):
    url = f"sqlite:///{tmp_path}/sensitive.db"
    migrate(url)
    command.downgrade(alembic_config(url), "0017")
    engine = make_engine(url)
    model_id = uuid.uuid4()
    profile = {"features": {"age": {"kind": "numeric", "bin_edges": [18.0, 30.0, 65.0]},
                            "plan": {"kind": "categorical", "frequencies": {"pro": 3}}}}
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO models (id, name, description, type, framework, status, hyperparameters, features, tags,"
            " metadata, created_by, latest_version, version_counter, created_at, updated_at) VALUES (:id, 'm', '',"
            " 'regression', 'scikit_learn', 'trained', '{}', '[\"age\", \"plan\"]', '{}', '{}', 'me', 2, 2,"
            " '2026-01-01', '2026-01-01')"), {"id": model_id.hex})
        for number, version_profile in ((1, json.dumps(profile)), (2, None)):
            conn.execute(sa.text(
                "INSERT INTO model_versions (id, model_id, number, artifact_sha256, size, provenance, status,"
                " description, parameters, metrics, tags, profile, created_by, created_at) VALUES (:id, :model,"
                " :number, :sha, 1, 'trained', 'ready', '', '{}', '{}', '{}', :profile, 'me', '2026-01-01')"),
                {"id": uuid.uuid4().hex, "model": model_id.hex, "number": number, "sha": "1" * 64,
                 "profile": version_profile})
            conn.execute(sa.text(
                "INSERT INTO version_baselines (model_id, version, registered_at) VALUES (:model, :number,"
                " '2026-01-01')"), {"model": model_id.hex, "number": number})
    engine.dispose()
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        sensitive = conn.scalar(sa.text("SELECT sensitive_features FROM models"))
        edges = conn.execute(sa.text("SELECT version, bin_edges FROM version_baselines ORDER BY version")).all()
        lists = conn.scalar(sa.text("SELECT count(*) FROM sensitive_features"))
    engine.dispose()
    assert json.loads(sensitive) == [] and lists == 0
    assert [(version, json.loads(found) if found else None) for version, found in edges] == [
        (1, {"age": [18.0, 30.0, 65.0]}), (2, None)]
