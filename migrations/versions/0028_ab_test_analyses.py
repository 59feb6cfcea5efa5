"""monitoring: its copy of each started A/B test, the looks its analysis took, its arms' sums per hour, units and
changed hours, and recorded metrics by test

Revision ID: 0028
Revises: 0026
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0028"
down_revision = "0026"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ab_test_analyses",
        sa.Column("ab_test_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("model_type", sa.String(32), nullable=False),
        sa.Column("model_a_id", sa.Uuid(), nullable=False),
        sa.Column("version_a", sa.Integer(), nullable=False),
        sa.Column("model_b_id", sa.Uuid(), nullable=False),
        sa.Column("version_b", sa.Integer(), nullable=False),
        sa.Column("traffic_split", sa.Float(), nullable=False),
        sa.Column("success_metrics", JSON, nullable=False),
        sa.Column("guardrail_metrics", JSON, nullable=False),
        sa.Column("min_sample_size", sa.Integer(), nullable=False),
        sa.Column("max_duration_days", sa.Integer(), nullable=False),
        sa.Column("significance_level", sa.Float(), nullable=False),
        sa.Column("mixing_variance", sa.Float(), nullable=False),
        sa.Column("minimum_detectable_effect", sa.Float(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("traffic_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("computed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("units_a", sa.Integer(), nullable=False),
        sa.Column("units_b", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("ab_test_id", name="pk_ab_test_analyses"),
    )
    op.create_table(
        "ab_test_looks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ab_test_id", sa.Uuid(), nullable=False),
        sa.Column("looked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.ForeignKeyConstraint(["ab_test_id"], ["ab_test_analyses.ab_test_id"],
                                name="fk_ab_test_looks_ab_test_id_ab_test_analyses", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_ab_test_looks"),
    )
    op.create_index("ix_ab_test_looks_ab_test_id_looked_at", "ab_test_looks", ["ab_test_id", "looked_at"])
    op.create_table(
        "ab_test_hours",
        sa.Column("ab_test_id", sa.Uuid(), nullable=False),
        sa.Column("arm", sa.String(1), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latencies", sa.Integer(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_sum_sq", sa.Float(), nullable=False),
        sa.Column("label_pairs", JSON, nullable=True),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("absolute_error", sa.Float(), nullable=False),
        sa.Column("squared_error", sa.Float(), nullable=False),
        sa.Column("squared_error_sq", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["ab_test_id"], ["ab_test_analyses.ab_test_id"],
                                name="fk_ab_test_hours_ab_test_id_ab_test_analyses", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ab_test_id", "arm", "hour", name="pk_ab_test_hours"),
    )
    op.create_table(
        "ab_test_units",
        sa.Column("ab_test_id", sa.Uuid(), nullable=False),
        sa.Column("arm", sa.String(1), nullable=False),
        sa.Column("unit", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(["ab_test_id"], ["ab_test_analyses.ab_test_id"],
                                name="fk_ab_test_units_ab_test_id_ab_test_analyses", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ab_test_id", "arm", "unit", name="pk_ab_test_units"),
    )
    op.create_table(
        "ab_test_stale_hours",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("ab_test_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ab_test_id"], ["ab_test_analyses.ab_test_id"],
                                name="fk_ab_test_stale_hours_ab_test_id_ab_test_analyses", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_ab_test_stale_hours"),
    )
    op.create_index("ix_ab_test_stale_hours_ab_test_id", "ab_test_stale_hours", ["ab_test_id"])
    op.create_index("ix_recorded_metrics_ab_test_id_name", "recorded_metrics", ["ab_test_id", "name"],
                    postgresql_where=sa.text("ab_test_id IS NOT NULL"), sqlite_where=sa.text("ab_test_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_recorded_metrics_ab_test_id_name", table_name="recorded_metrics")
    op.drop_index("ix_ab_test_stale_hours_ab_test_id", table_name="ab_test_stale_hours")
    op.drop_table("ab_test_stale_hours")
    op.drop_table("ab_test_units")
    op.drop_table("ab_test_hours")
    op.drop_index("ix_ab_test_looks_ab_test_id_looked_at", table_name="ab_test_looks")
    op.drop_table("ab_test_looks")
    op.drop_table("ab_test_analyses")
