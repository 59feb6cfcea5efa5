"""Metrics a model's users compute themselves and record with monitoring

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recorded_metrics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("context", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                  nullable=True),
        sa.Column("ab_test_id", sa.Uuid(), nullable=True),
        sa.Column("arm", sa.String(64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recorded_metrics"),
    )
    op.create_index("ix_recorded_metrics_model_id_name_measured_at", "recorded_metrics",
                    ["model_id", "name", "measured_at"])


def downgrade() -> None:
    op.drop_index("ix_recorded_metrics_model_id_name_measured_at", table_name="recorded_metrics")
    op.drop_table("recorded_metrics")
