"""monitoring: predictions keyed by the UTC day of their time, and partitioned by it on Postgres

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05

The request id is unique per model and day (uq_predictions_model_id_request_id_day): Postgres checks a
partitioned table's unique key within one partition, so the key must hold the partition key. Postgres
gets a partitioned table with a default partition, which takes every row until the maintenance task
(services/monitoring/partitions.py) gives days their own partitions; the rows are copied over. SQLite
keeps one table with the same columns and keys.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

COLUMNS = ("id", "model_id", "version", "endpoint", "deployment_id", "request_id", "unit_id", "features",
           "prediction", "probabilities", "latency_ms", "error", "context", "predicted_at", "received_at")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _create(name: str, *, partitioned: bool) -> None:
    """The predictions table as 0012 left it, with `day` in its keys when partitioned."""
    keys = ("id", "day") if partitioned else ("id",)
    unique = ("model_id", "request_id", "day") if partitioned else ("model_id", "request_id")
    op.create_table(
        name,
        sa.Column("id", sa.Uuid(), nullable=False),
        *([sa.Column("day", sa.Date(), nullable=False)] if partitioned else []),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("unit_id", sa.String(255), nullable=True),
        sa.Column("features", _json(), nullable=True),
        sa.Column("prediction", _json(), nullable=True),
        sa.Column("probabilities", _json(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("context", _json(), nullable=True),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(*keys, name="pk_predictions"),
        sa.UniqueConstraint(*unique, name="uq_predictions_model_id_request_id" + ("_day" if partitioned else "")),
        **({"postgresql_partition_by": "RANGE (day)"} if partitioned else {}),
    )
    op.create_index("ix_predictions_model_id_predicted_at", name, ["model_id", "predicted_at"])


def _set_aside() -> None:
    """Rename the current table and its keys out of the way of the new one."""
    op.execute("ALTER TABLE predictions RENAME TO predictions_before")
    op.execute("ALTER TABLE predictions_before RENAME CONSTRAINT pk_predictions TO pk_predictions_before")
    op.execute("ALTER INDEX ix_predictions_model_id_predicted_at RENAME TO ix_predictions_before")


def upgrade() -> None:
    columns = ", ".join(COLUMNS)
    if op.get_bind().dialect.name == "postgresql":
        _set_aside()
        op.execute("ALTER TABLE predictions_before RENAME CONSTRAINT uq_predictions_model_id_request_id "
                   "TO uq_predictions_before")
        _create("predictions", partitioned=True)
        op.execute("CREATE TABLE predictions_default PARTITION OF predictions DEFAULT")
        op.execute(f"INSERT INTO predictions ({columns}, day) SELECT {columns}, "
                   "(predicted_at AT TIME ZONE 'UTC')::date FROM predictions_before")
        op.execute("DROP TABLE predictions_before")
        return
    with op.batch_alter_table("predictions") as table:
        table.add_column(sa.Column("day", sa.Date(), nullable=True))
    op.execute("UPDATE predictions SET day = date(predicted_at)")
    with op.batch_alter_table("predictions") as table:
        table.alter_column("day", existing_type=sa.Date(), nullable=False)
        table.drop_constraint("uq_predictions_model_id_request_id", type_="unique")
        table.create_unique_constraint("uq_predictions_model_id_request_id_day", ["model_id", "request_id", "day"])
        table.drop_constraint("pk_predictions", type_="primary")
        table.create_primary_key("pk_predictions", ["id", "day"])


def downgrade() -> None:
    # One row per model and request id again: the day's duplicates of a request id go, the earliest kept.
    columns = ", ".join(COLUMNS)
    kept = (f"SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY model_id, request_id "
            "ORDER BY predicted_at, id) AS nth FROM predictions_before) AS ranked WHERE nth = 1")
    if op.get_bind().dialect.name == "postgresql":
        _set_aside()
        op.execute("ALTER TABLE predictions_before RENAME CONSTRAINT uq_predictions_model_id_request_id_day "
                   "TO uq_predictions_before")
        _create("predictions", partitioned=False)
        op.execute(f"INSERT INTO predictions ({columns}) {kept}")
        op.execute("DROP TABLE predictions_before CASCADE")
        return
    op.execute("DELETE FROM predictions WHERE id NOT IN (SELECT id FROM (SELECT id, row_number() OVER ("
               "PARTITION BY model_id, request_id ORDER BY predicted_at, id) AS nth FROM predictions) WHERE nth = 1)")
    with op.batch_alter_table("predictions") as table:
        table.drop_constraint("uq_predictions_model_id_request_id_day", type_="unique")
        table.create_unique_constraint("uq_predictions_model_id_request_id", ["model_id", "request_id"])
        table.drop_constraint("pk_predictions", type_="primary")
        table.create_primary_key("pk_predictions", ["id"])
        table.drop_column("day")
