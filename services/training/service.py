"""Training's manifest: what the composition root needs to know to run it, and its task names.

The task names live here because three parties use them: the web code that enqueues by name, the
coordinator that chains trials, and workers/hpo.py that defines them.
"""

from shared.service_spec import BeatEntry, Location, ServiceSpec

QUEUE = "hpo"
START_TRAINING = "hpo.start_training"
RUN_TRIAL = "hpo.run_trial"
FINALIZE_TRAINING = "hpo.finalize_training"
WARM_UP = "hpo.warm_up"
REDISPATCH_STALLED = "hpo.redispatch_stalled"

SERVICE = ServiceSpec(
    name="training",
    summary="training jobs and their hyperparameter-search trials",
    register="services.training.api:register",
    port=8103,
    # Regex locations win over prefixes: a model's trainings belong to training, the rest of /models to the registry.
    locations=(Location("^/api/v1/models/[^/]+/trainings$", "regex"), Location("/api/v1/trainings")),
    tables=("services.training.tables",),
    consumers=("services.training.handlers:version_registrations",),
    task_modules=("workers.hpo",),
    queues=(QUEUE,),
    # Heals trainings whose next task was committed but never reached the broker. On "default": a
    # minute's sweep must not wait behind an hour of trials.
    beat={"redispatch-stalled-trainings": BeatEntry(REDISPATCH_STALLED, 60.0, queue="default")},
    settings=("hpo_parallelism", "registry_url", "code_version", "data_root"),
)
