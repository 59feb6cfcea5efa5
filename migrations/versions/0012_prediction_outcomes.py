"""A prediction's actual outcome and the context its sender gave it

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
        table.add_column(sa.Column("actual", JSON, nullable=True))
        table.add_column(sa.Column("actual_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("context", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as table:
        table.drop_column("context")
        table.drop_column("actual_at")
        table.drop_column("actual")
