"""What each version's artifact is, whether the platform loads it, and the answers to Idempotency-Keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

- model_versions.format: skops, onnx, pickle, joblib or opaque, as the registry found it at upload.
- model_versions.loadable: whether the platform loads it (a skops file whose types are all trusted).
- idempotency_keys: per principal and key, the request's fingerprint and the answer it got, for a day.

Existing versions: those the platform trained are skops of trusted types by construction, so they get
`skops` and loadable. Uploaded ones were never looked at, and a file's name proves nothing (a pickle
renamed .skops), so both stay NULL: unknown, and never loaded until registered again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("format", sa.String(16), nullable=True))
    op.add_column("model_versions", sa.Column("loadable", sa.Boolean(), nullable=True))
    op.execute("UPDATE model_versions SET format = 'skops', loadable = true WHERE provenance = 'trained'")
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("mimetype", sa.String(255), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("model_versions") as batch:  # SQLite drops a column by rebuilding the table
        batch.drop_column("loadable")
        batch.drop_column("format")
