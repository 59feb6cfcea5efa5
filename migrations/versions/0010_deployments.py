"""Deployments: endpoints, deployments and their transitions, and each endpoint's traffic history

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_endpoints"),
        sa.UniqueConstraint("name", name="uq_endpoints_name"),
        sa.UniqueConstraint("model_id", "environment", name="uq_endpoints_model_id_environment"),
    )
    op.create_table(
        "deployments",
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("flavor", sa.String(32), nullable=True),
        sa.Column("features", JSON, nullable=False),
        sa.Column("profile", JSON, nullable=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("step_pause_seconds", sa.Float(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("previous_id", sa.Uuid(), nullable=True),
        sa.Column("health", JSON, nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("requested_by_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("live_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"], name="fk_deployments_endpoint_id_endpoints",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_model_id_created_at", "deployments", ["model_id", "created_at", "id"])
    op.create_index("ix_deployments_endpoint_id_status", "deployments", ["endpoint_id", "status"])
    op.create_index("ix_deployments_status_next_action_at", "deployments", ["status", "next_action_at"])
    op.create_table(
        "deployment_transitions",
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"],
                                name="fk_deployment_transitions_deployment_id_deployments", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_transitions"),
    )
    op.create_index("ix_deployment_transitions_deployment_id_at", "deployment_transitions", ["deployment_id", "at"])
    op.create_table(
        "endpoint_traffic",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("routes", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"], name="fk_endpoint_traffic_endpoint_id_endpoints",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_endpoint_traffic"),
    )
    op.create_index("ix_endpoint_traffic_endpoint_id_effective_at", "endpoint_traffic",
                    ["endpoint_id", "effective_at", "id"])


def downgrade() -> None:
    op.drop_table("endpoint_traffic")
    op.drop_table("deployment_transitions")
    op.drop_table("deployments")
    op.drop_table("endpoints")
