"""Registry tables: models, their numbered versions and aliases, datasets, and lineage edges.

Only the registry writes these. Artifact bytes live in the artifact store, addressed by sha256;
rows here only name the digest.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.registry.status import VERSION_READY
from shared.db import Base, JSONType, Timestamps, UUIDPrimaryKey, utcnow

# Version numbers are Postgres INTEGERs: a larger number in a URL or body is no version, not a 500.
MAX_VERSION_NUMBER = 2**31 - 1


PROVENANCES = ("uploaded", "trained")
UPLOADED, TRAINED = PROVENANCES

class RegisteredModel(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    type: Mapped[str] = mapped_column(sa.String(32))
    framework: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(32))
    hyperparameters: Mapped[dict] = mapped_column(JSONType, default=dict)
    features: Mapped[list] = mapped_column(JSONType, default=list)
    # Features whose values monitoring never stores in clear (services/monitoring/sensitive.py): some of `features`.
    sensitive_features: Mapped[list] = mapped_column(JSONType, default=list, server_default="[]")
    target_variable: Mapped[str | None] = mapped_column(sa.String(255))
    tags: Mapped[dict] = mapped_column(JSONType, default=dict)
    # `metadata` is taken by the declarative base, so the attribute has another name than its column.
    extra_metadata: Mapped[dict] = mapped_column("metadata", JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(sa.String(255))
    created_by_id: Mapped[str | None] = mapped_column(sa.String(64))
    # The highest version number that exists, and the number the last registered version got: numbers
    # are never reused, so deleting the latest version lowers the first and never the second.
    latest_version: Mapped[int | None] = mapped_column(sa.Integer)
    version_counter: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # The status a training moved the model out of: where a failed or cancelled training leaves it.
    status_before_training: Mapped[str | None] = mapped_column(sa.String(32))

    alias_rows: Mapped[list[ModelAlias]] = relationship(viewonly=True, order_by="ModelAlias.alias")

    __table_args__ = (
        sa.Index("ix_models_type", "type"),
        sa.Index("ix_models_framework", "framework"),
        sa.Index("ix_models_status", "status"),
        sa.Index("ix_models_created_at_id", "created_at", "id"),
        sa.Index("ix_models_updated_at_id", "updated_at", "id"),
        # `?q=` is an ILIKE '%...%' on both columns: only trigram indexes serve that at 100k rows.
        # (SQLite ignores the Postgres options and builds plain indexes: harmless at embedded scale.)
        sa.Index("ix_models_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
        sa.Index("ix_models_description_trgm", "description", postgresql_using="gin",
                 postgresql_ops={"description": "gin_trgm_ops"}),
    )


class ModelVersion(UUIDPrimaryKey, Base):
    __tablename__ = "model_versions"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    artifact_sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    # Only for Content-Disposition on download; never part of a filesystem path.
    artifact_filename: Mapped[str | None] = mapped_column(sa.String(255))
    # Uploaded or trained: decides later how (and whether) serving may load the artifact.
    provenance: Mapped[str] = mapped_column(sa.String(16), default=UPLOADED)
    # "ready" or "archived" (kept for lineage and audit, no longer offered for aliases).
    status: Mapped[str] = mapped_column(sa.String(16), default=VERSION_READY, server_default=VERSION_READY)
    # What the registry found the artifact to be (artifact_checks.FORMATS) and whether the platform loads
    # it (a skops file of trusted types). NULL for versions registered before uploads were checked: unknown.
    format: Mapped[str | None] = mapped_column(sa.String(16))
    loadable: Mapped[bool | None] = mapped_column(sa.Boolean)
    flavor: Mapped[str | None] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    parameters: Mapped[dict] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict] = mapped_column(JSONType, default=dict)
    tags: Mapped[dict] = mapped_column(JSONType, default=dict)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("datasets.id", ondelete="SET NULL"))
    dataset_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    parent_version: Mapped[int | None] = mapped_column(sa.Integer)
    training_job_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    code_version: Mapped[str | None] = mapped_column(sa.String(255))
    # The training data's profile (quantile bins, histograms, category frequencies): the drift reference.
    profile: Mapped[dict | None] = mapped_column(JSONType)
    # Up to 10,000 rows of the training features (a CSV artifact) that drift tests compare live data with.
    reference_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    reference_rows: Mapped[int | None] = mapped_column(sa.Integer)
    # Per input column, its share of the model's permutation importance on the test split (trained versions).
    feature_importances: Mapped[dict | None] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(sa.String(255))
    created_by_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    # Read from the session's identity map when the model was loaded first, as use cases do.
    model: Mapped[RegisteredModel] = relationship(viewonly=True)
    alias_rows: Mapped[list[ModelAlias]] = relationship(
        primaryjoin="and_(ModelVersion.model_id == foreign(ModelAlias.model_id), "
                    "ModelVersion.number == foreign(ModelAlias.version))",
        viewonly=True, order_by="ModelAlias.alias",
    )

    __table_args__ = (
        # The last line of defence for numbering: two versions can never share a number.
        sa.UniqueConstraint("model_id", "number", name="uq_model_versions_model_id_number"),
    )


class ModelAlias(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["model_id", "version"], ["model_versions.model_id", "model_versions.number"],
            name="fk_model_aliases_version_model_versions", ondelete="CASCADE",
        ),
    )


class Dataset(UUIDPrimaryKey, Base):
    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(sa.String(255))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    columns: Mapped[int] = mapped_column(sa.Integer)
    schema: Mapped[list] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(sa.String(255))
    created_by_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        # A dataset is identified by its name and content digest, as in MLflow.
        sa.UniqueConstraint("name", "sha256", name="uq_datasets_name_sha256"),
        sa.Index("ix_datasets_sha256", "sha256"),
        sa.Index("ix_datasets_created_at_id", "created_at", "id"),
    )


class LineageEdge(UUIDPrimaryKey, Base):
    """`source` fed into `target` (upstream -> downstream); `relation` says how."""

    __tablename__ = "lineage_edges"

    source_type: Mapped[str] = mapped_column(sa.String(32))
    source_id: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str] = mapped_column(sa.String(32))
    target_id: Mapped[str] = mapped_column(sa.String(64))
    relation: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("source_type", "source_id", "target_type", "target_id", "relation",
                            name="uq_lineage_edges_source_target_relation"),
        sa.Index("ix_lineage_edges_target", "target_type", "target_id"),
    )
