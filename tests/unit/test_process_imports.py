"""What the stack's long-lived processes import at start: the libraries that cost memory come with the
work that needs them, not with the process (resident memory counts every imported page in each process)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ML_LIBRARIES = {"numpy", "pandas", "scipy", "sklearn", "optuna", "skopt", "imblearn", "skops"}


def imported_packages(*modules: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing `modules`."""
    code = "; ".join(f"import {module}" for module in modules) + \
        "; import json, sys; print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_the_training_api_and_the_idle_worker_import_no_ml_library():
    loaded = imported_packages("services.training.api", "workers.celery_app", "workers.hpo", "workers.maintenance")
    assert not loaded & ML_LIBRARIES


def test_the_supervisor_imports_neither_the_database_nor_the_web_stack():
    loaded = imported_packages("launch.stack", "launch.run")
    assert not loaded & {"sqlalchemy", "alembic", "flask", "kombu", "celery"}


def test_beat_imports_no_sqlalchemy():
    assert "sqlalchemy" not in imported_packages("workers.beat")


def test_the_maintenance_worker_imports_no_web_stack():
    assert not imported_packages("workers.maintenance") & {"flask_smorest", "apispec", "flask_jwt_extended", "webargs"}
