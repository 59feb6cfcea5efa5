"""Deployment's manifest: the control plane of what each endpoint should serve, and its task names.

The task names live here because the web code enqueues by name and workers/deploy.py defines them.
"""

from shared.service_spec import BeatEntry, Location, ServiceSpec

QUEUE = "deploy"
ROLL_OUT = "deploy.roll_out"
NEXT_STEP = "deploy.next_step"
OBSERVE = "deploy.observe"
REDISPATCH_STALLED = "deploy.redispatch_stalled"
REPORT_USAGE = "deploy.report_usage"

SERVICE = ServiceSpec(
    name="deployment",
    summary="deployments, their rollouts and endpoints' traffic",
    register="services.deployment.api:register",
    port=8104,
    # A model's deployments belong here, the rest of /models to the registry; an endpoint's predictions
    # go to serving (its regex location wins over this prefix).
    locations=(Location("^/api/v1/models/[^/]+/deployments$", "regex"), Location("/api/v1/deployments"),
               Location("/api/v1/endpoints"), Location("/api/v1/ab-tests")),
    tables=("services.deployment.tables",),
    # Monitoring's verdicts on A/B tests (abtest.decided) conclude them, and may promote B.
    consumers=("services.deployment.handlers:ABTestDecisions",),
    task_modules=("workers.deploy",),
    queues=(QUEUE,),
    # Re-sends a rollout step whose task was committed but never reached the broker. On "default": a
    # sweep must not wait behind a rollout's health checks.
    beat={"redispatch-stalled-deployments": BeatEntry(REDISPATCH_STALLED, 30.0, queue="default"),
          # The replicas' CPU and memory for monitoring's alerts (usage.py), as often as they are evaluated.
          "report-replica-usage": BeatEntry(REPORT_USAGE, 60.0, queue="default")},
    settings=("registry_url", "switch_ahead_seconds", "serving_image"),
)
