"""finer planner statistics on the model columns `?q=` searches

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

`?q=` is an ILIKE '%text%' on name and description, ordered by a sort column and limited. With the
default statistics the planner guessed ~1,000 matches for a text that matches 10 of 100,000 models and
walked the created_at index until 51 turned up, reading every row (~100 ms, 1 search in 100). With a
2,000-entry histogram its guess follows the data: rare texts go through the trigram indexes, common
ones walk the sort index and stop early.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("name", "description")


def _set_statistics(target: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's planner has no per-column statistics target
    for column in COLUMNS:
        op.execute(f"ALTER TABLE models ALTER COLUMN {column} SET STATISTICS {target}")
    op.execute("ANALYZE models")


def upgrade() -> None:
    _set_statistics(2000)


def downgrade() -> None:
    _set_statistics(-1)  # back to default_statistics_target
