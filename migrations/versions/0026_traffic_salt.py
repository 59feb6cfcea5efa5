"""deployment: the salt a traffic change hashes units with (an A/B test's id; none: the endpoint's name)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoint_traffic") as table:
        table.add_column(sa.Column("salt", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoint_traffic") as table:
        table.drop_column("salt")
