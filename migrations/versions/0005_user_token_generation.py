"""users.token_generation: the bearer tokens a user's deactivation, role or password change cut off

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

A token carries the generation its user had when it was issued; a token of an older generation is
refused. Existing users start at 0, as do tokens issued before this column existed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:  # SQLite drops a column by rebuilding the table
        batch.drop_column("token_generation")
