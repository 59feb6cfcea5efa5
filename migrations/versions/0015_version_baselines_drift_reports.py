"""Monitoring's copy of each version's baseline, stored drift reports, versions' feature importances

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("feature_importances", JSON, nullable=True))
    baselines = op.create_table(
        "version_baselines",
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model_type", sa.String(32), nullable=True),
        sa.Column("reference_sha256", sa.String(64), nullable=True),
        sa.Column("reference_rows", sa.Integer(), nullable=True),
        sa.Column("feature_kinds", JSON, nullable=True),
        sa.Column("feature_importances", JSON, nullable=True),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "version", name="pk_version_baselines"),
    )
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=True),
        sa.Column("window_predictions", sa.Integer(), nullable=True),
        sa.Column("correction", sa.String(16), nullable=False),
        sa.Column("overall_drift_score", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("report", JSON, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
    )
    op.create_index("ix_drift_reports_model_id_version_computed_at", "drift_reports",
                    ["model_id", "version", "computed_at"])
    _copy_existing_baselines(baselines)


def _copy_existing_baselines(baselines: sa.Table) -> None:
    """The versions registered before monitoring kept its copy, as their registration event now says them."""
    models = sa.table("models", sa.column("id", sa.Uuid()), sa.column("type", sa.String()))
    versions = sa.table("model_versions", sa.column("model_id", sa.Uuid()), sa.column("number", sa.Integer()),
                        sa.column("metrics", JSON), sa.column("profile", JSON),
                        sa.column("reference_sha256", sa.String()), sa.column("reference_rows", sa.Integer()),
                        sa.column("created_at", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    rows = bind.execute(sa.select(versions, models.c.type).join(models, models.c.id == versions.c.model_id)).all()
    copied = []
    for row in rows:
        profiled = (row.profile or {}).get("features") or {}
        kinds = {name: "categorical" if (entry or {}).get("kind") == "categorical" else "numeric"
                 for name, entry in profiled.items()}
        copied.append({"model_id": row.model_id, "version": row.number, "model_type": row.type,
                       "metrics": row.metrics, "reference_sha256": row.reference_sha256,
                       "reference_rows": row.reference_rows, "feature_kinds": kinds or None,
                       "feature_importances": None, "registered_at": row.created_at})
    if copied:
        bind.execute(baselines.insert(), copied)


def downgrade() -> None:
    op.drop_index("ix_drift_reports_model_id_version_computed_at", table_name="drift_reports")
    op.drop_table("drift_reports")
    op.drop_table("version_baselines")
    with op.batch_alter_table("model_versions") as table:
        table.drop_column("feature_importances")
