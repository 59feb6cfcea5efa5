"""A trained version's reference sample of its training features, for drift

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("reference_sha256", sa.String(64), nullable=True))
        table.add_column(sa.Column("reference_rows", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.drop_column("reference_rows")
        table.drop_column("reference_sha256")
