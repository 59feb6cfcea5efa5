"""deployment: A/B test definitions

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ab_tests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("model_a_id", sa.Uuid(), nullable=False),
        sa.Column("version_a", sa.Integer(), nullable=False),
        sa.Column("model_b_id", sa.Uuid(), nullable=False),
        sa.Column("version_b", sa.Integer(), nullable=False),
        sa.Column("model_type", sa.String(32), nullable=False),
        sa.Column("environment", sa.String(16), nullable=False),
        sa.Column("traffic_split", sa.Float(), nullable=False),
        sa.Column("success_metrics", JSON, nullable=False),
        sa.Column("guardrail_metrics", JSON, nullable=False),
        sa.Column("min_sample_size", sa.Integer(), nullable=False),
        sa.Column("max_duration_days", sa.Integer(), nullable=False),
        sa.Column("significance_level", sa.Float(), nullable=False),
        sa.Column("mixing_variance", sa.Float(), nullable=False),
        sa.Column("minimum_detectable_effect", sa.Float(), nullable=False),
        sa.Column("test_config", JSON, nullable=False),
        sa.Column("auto_promote", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("warnings", JSON, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_by_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        sa.Column("deployment_a_id", sa.Uuid(), nullable=True),
        sa.Column("deployment_b_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ab_tests"),
        sa.UniqueConstraint("name", name="uq_ab_tests_name"),
        sa.UniqueConstraint("deployment_b_id", name="uq_ab_tests_deployment_b_id"),
    )
    op.create_index("ix_ab_tests_created_at", "ab_tests", ["created_at", "id"])
    op.create_index("ix_ab_tests_status", "ab_tests", ["status"])


def downgrade() -> None:
    op.drop_table("ab_tests")
