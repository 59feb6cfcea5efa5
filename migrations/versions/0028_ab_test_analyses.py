"""monitoring: its copy of each started A/B test, the looks its analysis took, and recorded metrics by test

Revision ID: 0028
Revises: 0025
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0028"
down_revision = "0025"
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
    op.create_index("ix_recorded_metrics_ab_test_id_name", "recorded_metrics", ["ab_test_id", "name"],
                    postgresql_where=sa.text("ab_test_id IS NOT NULL"), sqlite_where=sa.text("ab_test_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_recorded_metrics_ab_test_id_name", table_name="recorded_metrics")
    op.drop_index("ix_ab_test_looks_ab_test_id_looked_at", table_name="ab_test_looks")
    op.drop_table("ab_test_looks")
    op.drop_table("ab_test_analyses")
