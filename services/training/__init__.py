"""Training service: training jobs and their HPO trials, run by the Celery pool in workers/hpo.py
(manifest: service.py)."""
