"""The brief's example 1: register the churn model.

    MODELYARD_URL=http://127.0.0.1:8000 MODELYARD_PASSWORD=change-me python examples/1_register.py
"""

from _connect import CHURN, connect

from modelyard.client import Conflict

client = connect()
try:
    # The brief's fields as written, but for `created_by`: the server takes the creator from the credentials.
    model = client.models.create(
        CHURN, description="Predicts customer churn probability", type="classification", framework="scikit_learn",
        hyperparameters={"n_estimators": 100, "max_depth": 10, "random_state": 42},
        features=["age", "income", "usage_frequency", "support_calls"], target_variable="churned",
        metadata={"version": "1.0.0", "author": "data-science-team", "business_unit": "customer-success"})
    print("registered", model)
except Conflict as exc:  # run before: names are unique
    print(exc.describe())
    model = client.models.get(CHURN)
    print("already registered", model)
