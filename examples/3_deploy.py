"""The brief's example 3: deploy the trained churn model to production, follow the rollout, predict."""

from _connect import CHURN, connect

client = connect()
deployment = client.deployments.deploy(
    CHURN, "production",
    deployment_config={"resources": {"memory": "2Gi", "cpu": "1"}, "replicas": 3, "timeout": 30},
    health_check_config={"endpoint": "/health", "interval": 30, "timeout": 10, "retries": 3,
                         "success_threshold": 1, "failure_threshold": 3},
    scaling_config={"min_replicas": 2, "max_replicas": 10, "target_cpu_utilization": 70,
                    "target_memory_utilization": 80, "scale_up_cooldown": 300, "scale_down_cooldown": 300},
    monitoring_config={"enable_metrics": True, "enable_logging": True, "enable_tracing": True,
                       "alert_thresholds": {"cpu": 80, "memory": 85, "error_rate": 5, "latency": 1000}})
for step in client.deployments.follow(deployment.id):
    print("rollout", step.status, step.reason or "")
print("deployed", client.deployments.get(deployment.id))

answer = client.endpoints.predict(deployment.endpoint, [
    {"age": 42, "income": 61000.5, "usage_frequency": 3, "support_calls": 7},
    {"age": 23, "income": 38000.0, "usage_frequency": 25, "support_calls": 0}])
print("predicted", answer, answer.probabilities)
