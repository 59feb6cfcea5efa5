"""What each serving replica last reported of an endpoint, for the rollout's observation

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replica_reports",
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_seconds", sa.Float(), nullable=False),
        sa.Column("versions", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                  nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("rss_bytes", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"], name="fk_replica_reports_endpoint_id_endpoints",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("endpoint_id", "replica", name="pk_replica_reports"),
    )


def downgrade() -> None:
    op.drop_table("replica_reports")
