"""Audit rows record refusals too: an outcome per row

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

- audit_log.outcome: `allowed` (a change that was made; every existing row) or `denied` (a request
  refused for its credentials or role). The chain hashes it only when it is not `allowed`, so rows
  sealed before this revision still verify.
- ix_audit_log_denied: the few denied rows, in order, for `GET /api/v1/audit?outcome=denied`.

A downgrade keeps denied rows but loses their outcome, so a chain holding any no longer verifies there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("outcome", sa.String(16), nullable=False, server_default="allowed"))
    op.create_index("ix_audit_log_denied", "audit_log", ["seq"], postgresql_where=sa.text("outcome = 'denied'"),
                    sqlite_where=sa.text("outcome = 'denied'"))


def downgrade() -> None:
    op.drop_index("ix_audit_log_denied", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:  # SQLite drops a column by rebuilding the table
        batch.drop_column("outcome")
