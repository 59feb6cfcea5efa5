"""Lineage over HTTP: where a version came from (up), what derives from it (down), to a chosen depth."""

from __future__ import annotations

import uuid

import pytest

from services.registry.lineage import add_lineage_edge
from tests.support.registry import create_model, upload_csv, upload_version

pytestmark = pytest.mark.integration


@pytest.fixture
def family(app, client, ds):
    """dataset -> v1 -> v2 -> v3 -> v4 (parents), a training job -> v2, and v2 -> a deployment."""
    model = create_model(client, ds, "churn")
    dataset = upload_csv(client, ds, b"a,b\n1,2\n", name="customers").json
    job_id = str(uuid.uuid4())
    versions = [upload_version(client, ds, model["id"], b"v1", metadata={"dataset_id": dataset["id"]}).json]
    versions.append(upload_version(client, ds, model["id"], b"v2", metadata={
        "parent_version": 1, "training_job_id": job_id, "dataset_id": dataset["id"]}).json)
    for number in (3, 4):
        versions.append(upload_version(client, ds, model["id"], f"v{number}".encode(),
                                       metadata={"parent_version": number - 1}).json)
    deployment_id = str(uuid.uuid4())
    # Later services record their edges through the use case, with no schema change.
    with app.extensions["modelyard"].db.transaction() as session:
        add_lineage_edge(session=session, source_type="model_version", source_id=versions[1]["id"],
                         target_type="deployment", target_id=deployment_id, relation="deployed_as")
    return {"model": model, "dataset": f"dataset:{dataset['id']}", "job": f"training_job:{job_id}",
            "deployment": f"deployment:{deployment_id}",
            "v": {v["number"]: f"model_version:{v['id']}" for v in versions}}


def _lineage(client, ds, family, number, **query):
    response = client.get(f"/api/v1/models/{family['model']['id']}/versions/{number}/lineage", query_string=query,
                          headers=ds)
    assert response.status_code == 200, response.json
    graph = response.json
    return graph, {node["id"] for node in graph["nodes"]}, {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}


def test_up_walks_parents_training_job_and_dataset_to_the_given_depth(client, ds, family):
    v = family["v"]
    _, nodes, edges = _lineage(client, ds, family, 3, direction="up", depth=1)
    assert nodes == {v[3], v[2]} and edges == {(v[2], v[3], "parent")}
    _, nodes, _ = _lineage(client, ds, family, 3, direction="up", depth=2)
    assert nodes == {v[3], v[2], v[1], family["job"], family["dataset"]}
    graph, nodes, edges = _lineage(client, ds, family, 3, direction="up", depth=3)
    assert nodes == {v[3], v[2], v[1], family["job"], family["dataset"]}
    assert (family["dataset"], v[1], "training_data") in edges
    assert (family["job"], v[2], "training_job") in edges
    assert graph["root"] == v[3]


def test_down_walks_children_and_deployments(client, ds, family):
    v = family["v"]
    _, nodes, edges = _lineage(client, ds, family, 2, direction="down", depth=1)
    assert nodes == {v[2], v[3], family["deployment"]}
    assert (v[2], family["deployment"], "deployed_as") in edges
    _, nodes, _ = _lineage(client, ds, family, 2, direction="down", depth=5)
    assert nodes == {v[2], v[3], v[4], family["deployment"]}


def test_both_is_ancestors_and_descendants_without_siblings(client, ds, family):
    v = family["v"]
    _, nodes, _ = _lineage(client, ds, family, 2, depth=1)  # default direction: both
    assert nodes == {v[1], v[2], v[3], family["job"], family["dataset"], family["deployment"]}


def test_nodes_carry_a_type_and_a_readable_label(client, ds, family):
    graph, _, _ = _lineage(client, ds, family, 1, direction="both", depth=3)
    by_id = {node["id"]: node for node in graph["nodes"]}
    assert by_id[family["v"][1]]["type"] == "model_version"
    assert by_id[family["v"][1]]["label"] == "churn v1"
    assert by_id[family["dataset"]] | {"attributes": None} == {
        "id": family["dataset"], "type": "dataset", "label": "customers", "attributes": None}
    assert by_id[family["v"][1]]["attributes"]["number"] == 1


def test_lineage_arguments_are_validated(client, ds, family):
    url = f"/api/v1/models/{family['model']['id']}/versions/1/lineage"
    assert client.get(url, query_string={"depth": 11}, headers=ds).status_code == 422
    assert client.get(url, query_string={"depth": 0}, headers=ds).status_code == 422
    assert client.get(url, query_string={"direction": "sideways"}, headers=ds).status_code == 422
    assert client.get(f"/api/v1/models/{family['model']['id']}/versions/99/lineage", headers=ds).status_code == 404


def test_a_cycle_recorded_by_another_service_does_not_loop(app, client, ds, family):
    v = family["v"]
    with app.extensions["modelyard"].db.transaction() as session:
        add_lineage_edge(session=session, source_type="model_version", source_id=v[4].split(":")[1],
                         target_type="model_version", target_id=v[1].split(":")[1], relation="parent")
    _, nodes, _ = _lineage(client, ds, family, 1, direction="down", depth=10)
    assert {v[1], v[2], v[3], v[4]} <= nodes
