"""A candidate that passes its health checks but fails or slows down under real traffic is rolled back
automatically within the observation window, naming the threshold and the value; the endpoint serves
the version before it again."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest

from services.registry.handlers import DeploymentOutcomes
from shared.config import load_settings
from tests.conftest import RUN_ID
from tests.support.deployments import Misbehaving, deploy, iris_row, model_with_versions, pickled, wait_ended
from tests.support.polling import wait_for
from tests.support.registry import bearer, upload_version
from tests.support.training import celery_worker, event_pipeline, training_settings

pytestmark = pytest.mark.integration

WATCHED = {"monitoring_config": {"observation_seconds": 60, "min_requests": 5,
                                 "alert_thresholds": {"error_rate": 5, "latency": 100}}}


@pytest.fixture(scope="module")
def settings(database_url, servers, tmp_path_factory):
    # Pickle, for the misbehaving models of this module only.
    return {**training_settings(database_url, servers, tmp_path_factory.mktemp("observe"), RUN_ID),
            "allow_pickle": True}


@pytest.fixture
def settings_overrides(settings):
    return settings


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory):
    with event_pipeline(load_settings(settings), [DeploymentOutcomes(load_settings(settings))]):
        with celery_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log") as running:
            yield running


class Traffic:
    """A client predicting without pause; each answer's status and version."""

    def __init__(self, client, headers, endpoint):
        self.answers: list[tuple[int, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, headers, endpoint), daemon=True)

    def _run(self, client, headers, endpoint):
        while not self._stop.is_set():
            response = client.post(f"/api/v1/endpoints/{endpoint}/predict", json={"instances": [iris_row()]},
                                   headers=headers)
            self.answers.append((response.status_code, (response.json or {}).get("model_version")))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.mark.parametrize("candidate, threshold", [(Misbehaving(), "error rate"),
                                                  (Misbehaving(delay=0.3), "p95 latency")])
def test_a_candidate_that_misbehaves_under_traffic_is_rolled_back(client, ds, app, candidate, threshold):
    ml = bearer(app, "ml_engineer")
    model = model_with_versions(client, ds)
    first = wait_ended(client, ml, deploy(client, ml, model["id"]))
    assert upload_version(client, ds, model["id"], pickled(candidate), filename="model.pkl").status_code == 201
    with Traffic(client, ds, first["endpoint"]) as traffic:
        second = deploy(client, ml, model["id"], version=2, **WATCHED)
        ended = wait_for(lambda: (found := client.get(second["url"], headers=ml).json)["status"] == "rolled_back"
                         and found, timeout=60, what="the automatic rollback")
        # The version before serves again.
        wait_for(lambda: traffic.answers[-1] == (200, 1), timeout=5, what="version 1 to serve again")
    assert ended["reason"].startswith(f"automatic rollback: {threshold}"), ended["reason"]
    live = datetime.fromisoformat(next(t for t in ended["transitions"] if t["to_status"] == "live")["at"])
    rolled = datetime.fromisoformat(ended["transitions"][-1]["at"])
    # It went live, then the observation caught it: well inside the window, and the 15 s.
    assert timedelta(0) < rolled - live < timedelta(seconds=15), rolled - live
    assert client.get(f"/api/v1/deployments/{first['id']}", headers=ml).json["status"] == "live"
    endpoint = client.get(f"/api/v1/endpoints/{first['endpoint']}", headers=ds).json
    assert endpoint["live_version"] == 1
    assert endpoint["replicas"] and endpoint["replicas"][0]["healthy"]
