"""The brief's example 4: an A/B test of a new churn model (B) against the one live in production (A).

B is a second model trained on the same customers (example 2's dataset), a gradient boosting in one fit.
"""

from _connect import CHURN, CHURN_V2, connect

from modelyard.client import Conflict

client = connect()
old = client.models.get(CHURN)
try:
    new = client.models.create(CHURN_V2, type="classification", framework="scikit_learn",
                               features=old.features, target_variable=old.target_variable)
except Conflict:  # run before
    new = client.models.get(CHURN_V2)
if new.latest_version is None:
    dataset = client.versions.get(CHURN, "latest").dataset_id
    client.trainings.start(new.id, dataset_id=dataset, estimator="gradient_boosting",
                           enable_hyperparameter_optimization=False, random_state=42).wait()

test = client.ab_tests.create(
    "Churn Model Comparison", old.id, new.id, description="Compare new vs old churn prediction models",
    type="traffic_split", traffic_split=0.5, test_config={"duration": 14, "sample_size": 10000},
    success_metrics=["accuracy", "precision", "recall", "f1_score"],
    guardrail_metrics=["latency", "error_rate", "business_impact"],
    min_sample_size=5000, max_duration_days=30, significance_level=0.05)
print("created", test)
test = client.ab_tests.start(test.id)
print("started", test)
