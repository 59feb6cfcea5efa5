"""What each version's artifact is, and whether the platform loads it

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-04

- model_versions.format: skops, onnx, pickle, joblib or opaque, as the registry found it at upload.
- model_versions.loadable: whether the platform loads it (a skops file whose types are all trusted).

Existing versions: those the platform trained are skops of trusted types by construction, so they get
`skops` and loadable. Uploaded ones were never looked at, and a file's name proves nothing (a pickle
renamed .skops), so both stay NULL: unknown, and never loaded until registered again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("format", sa.String(16), nullable=True))
    op.add_column("model_versions", sa.Column("loadable", sa.Boolean(), nullable=True))
    op.execute("UPDATE model_versions SET format = 'skops', loadable = true WHERE provenance = 'trained'")


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:  # SQLite drops a column by rebuilding the table
        batch.drop_column("loadable")
        batch.drop_column("format")
