"""Versions that can be archived and deleted, and a model's status from before a training

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

- model_versions.status: `ready` or `archived` (existing versions are ready).
- models.version_counter: the number the last registered version got. Numbers are never reused, so
  once a version can be deleted the next number can no longer be derived from the versions left
  (`latest_version` is the highest number that still exists).
- models.status_before_training: the status a training moved the model out of, to go back to when
  the training fails or is cancelled.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("status", sa.String(16), nullable=False, server_default="ready"))
    op.add_column("models", sa.Column("version_counter", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("models", sa.Column("status_before_training", sa.String(32), nullable=True))
    op.execute("UPDATE models SET version_counter = coalesce(latest_version, 0)")


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:  # SQLite drops a column by rebuilding the table
        batch.drop_column("status_before_training")
        batch.drop_column("version_counter")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("status")
