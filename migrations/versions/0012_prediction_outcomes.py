"""Predictions' actual outcomes, and the context a prediction's sender gave it

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as table:
        table.add_column(sa.Column("context", JSON, nullable=True))
    op.create_table(
        "actuals",
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("actual", JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "request_id", name="pk_actuals"),
    )


def downgrade() -> None:
    op.drop_table("actuals")
    with op.batch_alter_table("predictions") as table:
        table.drop_column("context")
