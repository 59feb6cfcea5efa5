"""Lineage: an edge table (upstream `source` -> downstream `target`) and a bounded walk over it.

Edges are generic so later services record theirs without a schema change: training adds
`training_job -> model_version`, deployment `model_version -> deployment`, A/B tests
`model_version -> ab_test`, all through `add_lineage_edge`. `relation` names what the source is to
the target: a dataset is the `training_data` of a version, a version is the `parent` of another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.registry.tables import Dataset, LineageEdge, ModelVersion, RegisteredModel

NODE_TYPES = ("dataset", "training_job", "model_version", "deployment", "ab_test")
TRAINING_DATA, TRAINING_JOB, PARENT = "training_data", "training_job", "parent"
MAX_DEPTH = 10

NodeKey = tuple[str, str]


def add_lineage_edge(*, session: Session, source_type: str, source_id: Any, target_type: str, target_id: Any,
                     relation: str) -> LineageEdge:
    """Record that `source` fed into `target`; recording the same edge twice keeps one."""
    for node_type in (source_type, target_type):
        if node_type not in NODE_TYPES:
            raise ValueError(f"unknown lineage node type {node_type!r}")
    key = dict(source_type=source_type, source_id=str(source_id), target_type=target_type,
               target_id=str(target_id), relation=relation)
    existing = session.scalar(sa.select(LineageEdge).filter_by(**key))
    if existing is not None:
        return existing
    edge = LineageEdge(**key)
    session.add(edge)
    return edge


def forget_model_versions(*, session: Session, version_ids: Iterable[uuid.UUID]) -> None:
    """Drop every edge touching these versions (they, or their whole model, are being deleted)."""
    ids = [str(version_id) for version_id in version_ids]
    if not ids:
        return
    session.execute(sa.delete(LineageEdge).where(sa.or_(
        sa.and_(LineageEdge.source_type == "model_version", LineageEdge.source_id.in_(ids)),
        sa.and_(LineageEdge.target_type == "model_version", LineageEdge.target_id.in_(ids)),
    )))


def dataset_users(*, session: Session, dataset_id: uuid.UUID) -> list[str]:
    """Labels ("churn v3" ...) of what names the dataset in its lineage: the versions recording it as
    their dataset, and whatever an edge leads to from it."""
    keys: set[NodeKey] = {("model_version", str(version_id)) for version_id in session.scalars(
        sa.select(ModelVersion.id).where(ModelVersion.dataset_id == dataset_id))}
    keys |= {(target_type, target_id) for target_type, target_id in session.execute(
        sa.select(LineageEdge.target_type, LineageEdge.target_id).where(
            LineageEdge.source_type == "dataset", LineageEdge.source_id == str(dataset_id)))}
    return [node["label"] for node in _describe(session, keys)]


def traffic_served(*, session: Session, version_id: uuid.UUID) -> list[str]:
    """Labels of the deployments and A/B tests that recorded the version in their lineage: it served traffic."""
    keys = {(target_type, target_id) for target_type, target_id in session.execute(
        sa.select(LineageEdge.target_type, LineageEdge.target_id).where(
            LineageEdge.source_type == "model_version", LineageEdge.source_id == str(version_id),
            LineageEdge.target_type.in_(("deployment", "ab_test"))))}
    return [node["label"] for node in _describe(session, keys)]


def _walk(session: Session, root: NodeKey, *, upstream: bool, depth: int) -> list[LineageEdge]:
    """Breadth-first from `root`, one query per level, never visiting a node twice (cycles end)."""
    near_type, near_id = (LineageEdge.target_type, LineageEdge.target_id) if upstream else (
        LineageEdge.source_type, LineageEdge.source_id)
    seen: set[NodeKey] = {root}
    frontier: set[NodeKey] = {root}
    found: list[LineageEdge] = []
    for _ in range(depth):
        if not frontier:
            break
        edges = session.scalars(
            sa.select(LineageEdge).where(sa.tuple_(near_type, near_id).in_(sorted(frontier)))
            .order_by(LineageEdge.created_at, LineageEdge.id)
        ).all()
        found.extend(edges)
        reached = {(e.source_type, e.source_id) if upstream else (e.target_type, e.target_id) for e in edges}
        frontier = reached - seen
        seen |= reached
    return found


def _node_id(node_type: str, node_id: str) -> str:
    return f"{node_type}:{node_id}"


def _describe(session: Session, keys: set[NodeKey]) -> list[dict[str, Any]]:
    """Label every node; datasets and versions are read from the registry's own tables."""
    ids_by_type: dict[str, list[str]] = {}
    for node_type, node_id in keys:
        ids_by_type.setdefault(node_type, []).append(node_id)
    described: dict[NodeKey, dict[str, Any]] = {}
    dataset_ids = [uuid.UUID(i) for i in ids_by_type.get("dataset", [])]
    for dataset in session.scalars(sa.select(Dataset).where(Dataset.id.in_(dataset_ids))) if dataset_ids else ():
        described[("dataset", str(dataset.id))] = {
            "label": dataset.name, "attributes": {"sha256": dataset.sha256, "rows": dataset.rows}}
    version_ids = [uuid.UUID(i) for i in ids_by_type.get("model_version", [])]
    if version_ids:
        rows = session.execute(
            sa.select(ModelVersion, RegisteredModel.name).join(RegisteredModel)
            .where(ModelVersion.id.in_(version_ids))
        )
        for version, model_name in rows:
            described[("model_version", str(version.id))] = {
                "label": f"{model_name} v{version.number}",
                "attributes": {"model_id": str(version.model_id), "model_name": model_name,
                               "number": version.number, "artifact_sha256": version.artifact_sha256,
                               "created_by": version.created_by},
            }
    nodes = []
    for node_type, node_id in sorted(keys):
        known = described.get((node_type, node_id))
        if known is None:
            # Owned by another service (training job, deployment ...) or deleted since.
            known = {"label": f"{node_type.replace('_', ' ')} {node_id[:8]}", "attributes": {}}
        nodes.append({"id": _node_id(node_type, node_id), "type": node_type, **known})
    return nodes


def lineage_graph(*, session: Session, version: ModelVersion, direction: str = "both",
                  depth: int = 3) -> dict[str, Any]:
    """The version's lineage as `{root, nodes, edges}`: `up` is where it came from, `down` what
    derives from it, `both` is the two walks together (not their zig-zag, which would pull in
    siblings)."""
    depth = max(1, min(depth, MAX_DEPTH))
    root: NodeKey = ("model_version", str(version.id))
    edges: dict[uuid.UUID, LineageEdge] = {}
    if direction in ("up", "both"):
        edges.update((e.id, e) for e in _walk(session, root, upstream=True, depth=depth))
    if direction in ("down", "both"):
        edges.update((e.id, e) for e in _walk(session, root, upstream=False, depth=depth))
    keys = {root}
    for edge in edges.values():
        keys |= {(edge.source_type, edge.source_id), (edge.target_type, edge.target_id)}
    return {
        "root": _node_id(*root),
        "nodes": _describe(session, keys),
        "edges": [{"source": _node_id(e.source_type, e.source_id), "target": _node_id(e.target_type, e.target_id),
                   "relation": e.relation} for e in edges.values()],
    }
