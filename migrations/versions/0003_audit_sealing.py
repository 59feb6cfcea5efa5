"""audit rows are sealed into the hash chain after commit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

POSITION = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("chain_position", POSITION, nullable=True))
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=True)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=True)
        batch.create_unique_constraint("uq_audit_log_chain_position", ["chain_position"])
    # Rows written before this revision were chained in seq order: their position is their rank.
    op.execute("UPDATE audit_log SET chain_position = (SELECT count(*) FROM audit_log AS earlier "
               "WHERE earlier.seq <= audit_log.seq)")
    op.create_index("ix_audit_log_unsealed", "audit_log", ["seq"], postgresql_where=sa.text("chain_position IS NULL"),
                    sqlite_where=sa.text("chain_position IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_audit_log_unsealed", table_name="audit_log")
    op.execute("DELETE FROM audit_log WHERE chain_position IS NULL")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint("uq_audit_log_chain_position", type_="unique")
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.drop_column("chain_position")
