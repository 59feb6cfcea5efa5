"""Models' sensitive features, and what monitoring keeps to store their values protected: each model's
list, and each version's numeric bin edges

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("models") as table:
        table.add_column(sa.Column("sensitive_features", JSON, nullable=False, server_default="[]"))
    # Monitoring's copy of the lists needs no rows yet: every existing model's list is the empty one above.
    op.create_table(
        "sensitive_features",
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("features", JSON, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_sensitive_features"),
    )
    with op.batch_alter_table("version_baselines") as table:
        table.add_column(sa.Column("bin_edges", JSON, nullable=True))
    _copy_existing_bin_edges()


def _copy_existing_bin_edges() -> None:
    """The versions monitoring knew before: their numeric bin edges, as their registration event now
    carries them (services.registry.versions.profiled_bin_edges), so that a feature of theirs marked
    sensitive later is stored as its bin."""
    versions = sa.table("model_versions", sa.column("model_id", sa.Uuid()), sa.column("number", sa.Integer()),
                        sa.column("profile", JSON))
    baselines = sa.table("version_baselines", sa.column("model_id", sa.Uuid()), sa.column("version", sa.Integer()),
                         sa.column("bin_edges", JSON))
    bind = op.get_bind()
    for row in bind.execute(sa.select(versions).where(versions.c.profile.is_not(None))).all():
        edges = {name: entry["bin_edges"] for name, entry in ((row.profile or {}).get("features") or {}).items()
                 if (entry or {}).get("kind") == "numeric" and entry.get("bin_edges")}
        if edges:
            bind.execute(baselines.update().where(baselines.c.model_id == row.model_id,
                                                  baselines.c.version == row.number).values(bin_edges=edges))


def downgrade() -> None:
    with op.batch_alter_table("version_baselines") as table:
        table.drop_column("bin_edges")
    op.drop_table("sensitive_features")
    with op.batch_alter_table("models") as table:
        table.drop_column("sensitive_features")
