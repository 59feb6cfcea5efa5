"""The brief's example 5: record a prediction made elsewhere and a batch's metrics, then read the churn
model's drift and performance."""

import time

from _connect import CHURN, connect

from modelyard.client import Conflict

client = connect()
model = client.models.get(CHURN)

# Predictions served by the endpoint are recorded with their features: what drift compares.
endpoint = next(endpoint for endpoint in client.endpoints.list() if endpoint.model_id == model.id)
for n in range(40):
    client.endpoints.predict(endpoint.name, [{"age": 20 + n, "income": 40_000.0 + 1_000 * n,
                                              "usage_frequency": n % 30, "support_calls": n % 5}],
                             unit_id=f"customer-{n}")

print("recorded", client.monitoring.record_predictions({
    "model_id": model.id, "prediction": {"prediction": 0.85, "confidence": 0.92}, "actual": {"actual": 1},
    "context": {"request_id": "req-123", "user_id": "user-456"}}))
print("recorded", client.monitoring.record_metrics(
    model.id, {"accuracy": 0.87, "precision": 0.85, "recall": 0.89, "f1_score": 0.87, "latency": 150,
               "throughput": 100},
    context={"batch_size": 100, "timestamp": "2026-12-04T10:00:00Z"}))

# Served predictions reach monitoring's store within a moment; until then there is nothing to compare.
for _ in range(30):
    try:
        drift = client.models.drift(model.id, refresh=True)
        break
    except Conflict as exc:
        print("waiting:", exc.detail)
        time.sleep(1)
else:
    raise SystemExit("no drift report: the served predictions did not reach monitoring within 30 s")
print("drift", drift)
performance = client.models.performance(model.id, days=30)
print("performance", performance)
