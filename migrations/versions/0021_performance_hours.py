"""monitoring: each model's predictions tallied per version and hour, and the hours whose tallies are stale

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05

Every hour that already holds predictions is marked stale: beat's refresh (services/monitoring/rollups.py)
tallies them, and reads tally a stale hour from its rows meanwhile.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "performance_hours",
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency_bins", sa.LargeBinary(), nullable=True),
        sa.Column("outputs", sa.Integer(), nullable=False),
        sa.Column("output_sum", sa.Float(), nullable=False),
        sa.Column("feature_values", sa.BigInteger(), nullable=False),
        sa.Column("missing_values", sa.BigInteger(), nullable=False),
        sa.Column("labeled", sa.Integer(), nullable=False),
        sa.Column("label_pairs", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                  nullable=True),
        sa.Column("score_bins", sa.LargeBinary(), nullable=True),
        sa.Column("unscored", sa.Integer(), nullable=False),
        sa.Column("scored_pairs", sa.Integer(), nullable=False),
        sa.Column("squared_error", sa.Float(), nullable=False),
        sa.Column("absolute_error", sa.Float(), nullable=False),
        sa.Column("actual_mean", sa.Float(), nullable=False),
        sa.Column("actual_spread", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "hour", "version", name="pk_performance_hours"),
    )
    op.create_table(
        "stale_hours",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stale_hours"),
    )
    op.create_index("ix_stale_hours_model_id_hour", "stale_hours", ["model_id", "hour"])
    if op.get_bind().dialect.name == "postgresql":
        hour = "date_trunc('hour', predicted_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:  # SQLite's DateTime: the UTC wall clock as text
        hour = "strftime('%Y-%m-%d %H:00:00.000000', predicted_at)"
    op.execute(f"INSERT INTO stale_hours (model_id, hour) SELECT DISTINCT model_id, {hour} FROM predictions")


def downgrade() -> None:
    op.drop_index("ix_stale_hours_model_id_hour", table_name="stale_hours")
    op.drop_table("stale_hours")
    op.drop_table("performance_hours")
