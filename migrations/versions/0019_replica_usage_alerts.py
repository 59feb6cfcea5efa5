"""Serving replicas' CPU and memory as monitoring keeps them, the brief's CPU and memory alert rules, the
rules a deployment's alert thresholds make, and the deleted models whose alerts resolve

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# The brief's alerts, for every model: CPU or memory above 80% (of what the deployment gives each replica).
DEFAULT_RULES = (("CPU above 80% of a replica's CPU", "cpu_percent", 80.0, 5),
                 ("memory above 80% of a replica's memory", "memory_percent", 80.0, 5))


def upgrade() -> None:
    op.create_table(
        "replica_usage",
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_percent", sa.Float(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "replica", name="pk_replica_usage"),
    )
    op.create_index("ix_replica_usage_model_id_reported_at", "replica_usage", ["model_id", "reported_at"])
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(sa.Column("deployment_id", sa.Uuid(), nullable=True))
    op.create_table(
        "deleted_models",
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_deleted_models"),
    )
    rules = sa.table("alert_rules", sa.column("id", sa.Uuid()), sa.column("name", sa.String()),
                     sa.column("model_id", sa.Uuid()), sa.column("metric", sa.String()),
                     sa.column("threshold", sa.Float()), sa.column("window_minutes", sa.Integer()),
                     sa.column("enabled", sa.Boolean()), sa.column("webhook_url", sa.String()),
                     sa.column("webhook_secret", sa.String()), sa.column("created_by", sa.String()),
                     sa.column("created_at", sa.DateTime(timezone=True)),
                     sa.column("updated_at", sa.DateTime(timezone=True)))
    now = datetime.now(timezone.utc)
    op.bulk_insert(rules, [{"id": uuid.uuid4(), "name": name, "model_id": None, "metric": metric,
                            "threshold": threshold, "window_minutes": window, "enabled": True, "webhook_url": None,
                            "webhook_secret": None, "created_by": "system", "created_at": now, "updated_at": now}
                           for name, metric, threshold, window in DEFAULT_RULES])


def _delete_rules(where: str) -> None:
    # Their alerts and deliveries first: SQLite's foreign keys are off while migrating, nothing cascades.
    rules = f"SELECT id FROM alert_rules WHERE {where}"
    op.execute(sa.text("DELETE FROM webhook_deliveries WHERE alert_id IN "
                       f"(SELECT id FROM alerts WHERE rule_id IN ({rules}))"))
    op.execute(sa.text(f"DELETE FROM alerts WHERE rule_id IN ({rules})"))
    op.execute(sa.text(f"DELETE FROM alert_rules WHERE {where}"))


def downgrade() -> None:
    _delete_rules("deployment_id IS NOT NULL OR metric IN ('cpu_percent', 'memory_percent')")
    op.drop_table("deleted_models")
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_column("deployment_id")
    op.drop_index("ix_replica_usage_model_id_reported_at", table_name="replica_usage")
    op.drop_table("replica_usage")
