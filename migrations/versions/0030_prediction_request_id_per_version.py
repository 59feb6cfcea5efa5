"""monitoring: a request id is stored once per model version and day, not once per model and day

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06

A shadow A/B test between two versions of one model records both versions' answers to the same request
under its request id (services/serving/predictions.py): the old key kept A's and dropped B's. A record
sent twice still leaves one row.
"""

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

OLD, NEW = "uq_predictions_model_id_request_id_day", "uq_predictions_model_id_request_id_version_day"


def upgrade() -> None:
    # On Postgres's partitioned table the constraint (and its index) is made on every partition with it.
    with op.batch_alter_table("predictions") as table:
        table.drop_constraint(OLD, type_="unique")
        table.create_unique_constraint(NEW, ["model_id", "request_id", "version", "day"])


def downgrade() -> None:
    # One row per model, request id and day again: the earliest kept of each.
    op.execute("DELETE FROM predictions WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER ("
               "PARTITION BY model_id, request_id, day ORDER BY predicted_at, id) AS nth FROM predictions) AS ranked "
               "WHERE nth > 1)")
    with op.batch_alter_table("predictions") as table:
        table.drop_constraint(NEW, type_="unique")
        table.create_unique_constraint(OLD, ["model_id", "request_id", "day"])
