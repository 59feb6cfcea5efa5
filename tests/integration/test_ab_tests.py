"""A/B test definitions: the brief's fourth example is a draft with both arms fixed, metrics named as the test
knows them and a warning when the sample is too small; bad definitions are refused and store nothing."""

from __future__ import annotations

import pytest

from tests.support.deployments import model_with_versions, skops_model
from tests.support.registry import bearer, upload_version

pytestmark = pytest.mark.integration

AB_TESTS = "/api/v1/ab-tests"


@pytest.fixture
def engineer(app):
    return bearer(app, "ml_engineer", "erin")


@pytest.fixture
def models(client, ds):
    """An old churn model and a new one, as the brief's example compares: two versions each."""
    return model_with_versions(client, ds, 2), model_with_versions(client, ds, 2)


def brief_example(old: dict, new: dict, **changes) -> dict:
    return {"name": "Churn Model Comparison", "description": "Compare new vs old churn prediction models",
            "type": "traffic_split", "model_a_id": old["id"], "model_b_id": new["id"], "traffic_split": 0.5,
            "test_config": {"duration": 14, "sample_size": 10000},
            "success_metrics": ["accuracy", "precision", "recall", "f1_score"],
            "guardrail_metrics": ["latency", "error_rate", "business_impact"],
            "min_sample_size": 5000, "max_duration_days": 30, "significance_level": 0.05, **changes}


def test_the_brief_example_is_a_draft_with_both_arms_fixed(client, engineer, models):
    old, new = models
    answer = client.post(AB_TESTS, json=brief_example(old, new), headers=engineer)
    assert answer.status_code == 201, answer.json
    test = answer.json
    assert answer.headers["Location"].endswith(f"{AB_TESTS}/{test['id']}")
    assert test["status"] == "draft" and test["verdict"] is None and test["created_by"] == "erin"
    # Nothing deployed: A is its latest version, as is B.
    assert (test["model_a_id"], test["version_a"], test["model_b_id"], test["version_b"]) == (
        old["id"], 2, new["id"], 2)
    assert test["success_metrics"] == ["accuracy", "precision", "recall", "f1"]
    assert test["guardrail_metrics"] == [
        {"name": "latency", "margin": 0.1, "relative": True, "lower_is_better": True},
        {"name": "error_rate", "margin": 0.01, "relative": False, "lower_is_better": True},
        {"name": "business_impact", "margin": 0.05, "relative": True, "lower_is_better": False}]
    assert test["test_config"] == {"duration": 14, "sample_size": 10000} and test["warnings"] == []
    assert client.get(f"{AB_TESTS}/{test['id']}", headers=bearer(client.application, "viewer")).json == test
    listed = client.get(AB_TESTS, query_string={"status": "draft"}, headers=engineer).json
    assert [item["id"] for item in listed["items"]] == [test["id"]]
    assert client.get(AB_TESTS, query_string={"status": "running"}, headers=engineer).json["items"] == []


def test_two_versions_of_one_model_and_guardrails_with_their_own_margins(client, engineer, models):
    old, _ = models
    answer = client.post(AB_TESTS, json={
        "name": "v1 against v2", "model_a_id": old["name"], "version_a": 1, "success_metrics": ["recall"],
        "guardrail_metrics": [{"name": "latency", "margin": 20}, {"name": "revenue", "relative_margin": 0.02,
                                                                  "lower_is_better": False}],
        "traffic_split": 0.1}, headers=engineer)
    assert answer.status_code == 201, answer.json
    test = answer.json
    assert (test["model_b_id"], test["version_a"], test["version_b"]) == (old["id"], 1, 2)
    assert test["guardrail_metrics"] == [
        {"name": "latency", "margin": 20.0, "relative": False, "lower_is_better": True},
        {"name": "revenue", "margin": 0.02, "relative": True, "lower_is_better": False}]
    assert test["min_sample_size"] == 1000 and test["significance_level"] == 0.05 and test["auto_promote"] is False


def test_a_shadow_test_copies_every_request_to_b_and_says_a_split_given_to_it_is_ignored(client, engineer, models):
    old, new = models
    answer = client.post(AB_TESTS, json={"name": "shadowed", "model_a_id": old["id"], "model_b_id": new["id"],
                                         "type": "shadow", "traffic_split": 0.2, "success_metrics": ["accuracy"]},
                         headers=engineer)
    assert answer.status_code == 201, answer.json
    assert (answer.json["type"], answer.json["traffic_split"]) == ("shadow", 1.0)
    assert any("traffic_split 0.2 is ignored" in warning for warning in answer.json["warnings"]), answer.json


def test_too_small_a_sample_for_the_effect_sought_is_said(client, ds, engineer):
    model = model_with_versions(client, ds, 1)
    upload_version(client, ds, model["id"], skops_model(5), metadata={"metrics": {"test_accuracy": 0.8}},
                   filename="model.skops")
    answer = client.post(AB_TESTS, json={"name": "small", "model_a_id": model["id"], "version_a": 2, "version_b": 1,
                                         "success_metrics": ["accuracy"], "min_sample_size": 100,
                                         "test_config": {"sample_size": 150}}, headers=engineer)
    assert answer.status_code == 201, answer.json
    power, plan = answer.json["warnings"]
    assert "min_sample_size 100 is too small to detect a 5% relative change in accuracy" in power
    assert "test_config.sample_size 150 gives an arm about 75 units" in plan


@pytest.mark.parametrize("changes, field", [
    ({"traffic_split": 0}, "traffic_split"),
    ({"traffic_split": 1.0}, "traffic_split"),
    ({"significance_level": 0.5}, "significance_level"),
    ({"significance_level": 0}, "significance_level"),
    ({"min_sample_size": 0}, "min_sample_size"),
    ({"success_metrics": []}, "success_metrics"),
    ({"success_metrics": ["accurcy"]}, "success_metrics"),
    ({"success_metrics": ["rmse"]}, "success_metrics"),
    ({"success_metrics": ["Business Impact"]}, "success_metrics"),
    ({"success_metrics": ["f1", "f1_score"]}, "success_metrics"),
    ({"guardrail_metrics": [{"name": "latency", "margin": 1, "relative_margin": 0.1}]}, "guardrail_metrics"),
    ({"guardrail_metrics": [3]}, "guardrail_metrics"),
    ({"type": "interleaved"}, "type"),
    ({"created_by": "someone"}, "created_by"),
    ({"version_b": 9}, "version_b"),
])
def test_a_bad_definition_is_a_422_naming_its_field_and_stores_nothing(client, engineer, models, changes, field):
    old, new = models
    answer = client.post(AB_TESTS, json=brief_example(old, new, **changes), headers=engineer)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["errors"], answer.json
    assert client.get(AB_TESTS, headers=engineer).json["items"] == []


def test_both_arms_one_version_is_a_422(client, engineer, models):
    old, _ = models
    answer = client.post(AB_TESTS, json={"name": "same", "model_a_id": old["id"], "version_a": 2,
                                         "success_metrics": ["accuracy"]}, headers=engineer)
    assert answer.status_code == 422 and "version_b" in answer.json["errors"]


def test_names_are_unique_unknown_ids_404_and_writing_takes_an_ml_engineer(client, engineer, ds, models):
    old, new = models
    assert client.post(AB_TESTS, json=brief_example(old, new), headers=engineer).status_code == 201
    assert client.post(AB_TESTS, json=brief_example(old, new), headers=engineer).status_code == 409
    assert client.post(AB_TESTS, json=brief_example(old, new, name="other"), headers=ds).status_code == 403
    missing = client.post(AB_TESTS, json=brief_example({"id": "no-such-model"}, new, name="x"), headers=engineer)
    assert missing.status_code == 404
    assert client.get(f"{AB_TESTS}/00000000-0000-0000-0000-000000000000", headers=engineer).status_code == 404
