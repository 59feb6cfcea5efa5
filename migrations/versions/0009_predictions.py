"""monitoring: the predictions store, filled from serving's prediction records

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

One row per prediction served (or failed: an error and no prediction). A request id is stored once per
model (uq_predictions_model_id_request_id, which the ingest worker's ON CONFLICT names); reads go by model
and time. Partitioning by time on Postgres comes with the monitoring issue.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
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
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.UniqueConstraint("model_id", "request_id", name="uq_predictions_model_id_request_id"),
    )
    op.create_index("ix_predictions_model_id_predicted_at", "predictions", ["model_id", "predicted_at"])


def downgrade() -> None:
    op.drop_index("ix_predictions_model_id_predicted_at", table_name="predictions")
    op.drop_table("predictions")
