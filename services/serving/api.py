"""HTTP view of the data plane: POST /api/v1/endpoints/<name>/predict, and the replica it serves from."""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from flask_smorest import Api
from marshmallow import Schema, fields, validate

from services.serving import predictions, switch
from services.serving.mirror import Mirror
from services.serving.prediction_log import PredictionLog
from services.serving.replica import Replica
from services.serving.window import ServingStats, process_usage
from shared.artifacts import ArtifactStore
from shared.auth import issue_token, requires
from shared.config import Settings
from shared.errors import IntegrityFailure
from shared.schemas import StrictSchema
from shared.prediction_records import QUEUE as PREDICTIONS_QUEUE
from shared.service_client import fetcher
from shared.tasks import task_sender
from shared.web import Blueprint, MethodView, Runtime, runtime

blp = Blueprint("serving", __name__, url_prefix="/api/v1/endpoints", description="Predictions")
SERVING_KEY = "modelyard.serving"
# The replica reads the desired state as this principal, with a token it mints (every service shares
# the signing secret); re-minted well before the shortest expiry a deployment configures.
SERVICE_PRINCIPAL = "service:serving"
TOKEN_SECONDS = 60.0
# The window of requests a replica reports: long enough to judge a candidate, short enough to see it change.
REPORT_WINDOW_SECONDS = 30.0


class PredictRequestSchema(StrictSchema):
    # Validated against the model's features by services.serving.instances: marshmallow per row would
    # cost more than the prediction.
    instances = fields.Raw(required=True, metadata={"description": "rows: [{feature: value}]",
                                                    "type": "array", "items": {"type": "object"}})
    request_id = fields.String(load_default=None, validate=validate.Length(min=1, max=128),
                               metadata={"description": "yours, for joining actuals later; one row: as given, "
                                                        "several: <request_id>-<row>; default: generated"})
    unit_id = fields.String(load_default=None, validate=validate.Length(min=1, max=128),
                            metadata={"description": "who the prediction is for: the same unit always meets the "
                                                     "same version during a canary"})


class PredictionSchema(Schema):
    predictions = fields.List(fields.Raw())
    probabilities = fields.List(fields.Dict(keys=fields.String(), values=fields.Float()),
                                metadata={"description": "classifiers: per row, each class's probability"})
    model_id = fields.String(metadata={"description": "the model whose version answered: the endpoint's, or during "
                                                      "an A/B test possibly the other arm's model"})
    model_version = fields.Integer(metadata={"description": "the version that answered"})
    request_ids = fields.List(fields.String())
    endpoint = fields.String()


@dataclass
class Serving:
    replica: Replica
    stats: ServingStats
    log: PredictionLog
    mirror: Mirror

    def close(self) -> None:
        switch.forget(self.replica.refresh_if_served)
        self.replica.stop()
        self.mirror.close()  # before the log: the shadow predictions it runs still hand the log their records
        self.log.close()


class _ServiceToken:
    def __init__(self, app: Flask):
        self._app, self._token, self._minted = app, "", -TOKEN_SECONDS
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() - self._minted > TOKEN_SECONDS:
                with self._app.app_context():
                    # ml_engineer: the replica reads desired states and writes its reports.
                    self._token = issue_token(user_id=SERVICE_PRINCIPAL, username="serving", role="ml_engineer")
                self._minted = time.monotonic()
            return self._token


def _loader(settings: Settings):
    store = ArtifactStore.from_settings(settings)

    def load(deployment: dict[str, Any]) -> Any:
        # Imported here: the all-in-one app's other services never pay for scikit-learn at start.
        from shared.served_model import LoadedModel

        data = store.read_bytes(deployment["artifact_sha256"])
        if hashlib.sha256(data).hexdigest() != deployment["artifact_sha256"]:
            raise IntegrityFailure(f"Version {deployment['version']}'s artifact does not match its sha256.")
        return LoadedModel.load(data, flavor=deployment.get("flavor") or "skops", features=deployment["features"],
                                profile=deployment.get("profile"), allow_pickle=settings.allow_pickle)

    return load


_creating = threading.Lock()


class _Reports:
    """What this replica reports of an endpoint at each poll: its window of requests per deployment, and its
    CPU and memory. CPU is measured once per poll round (it is the time since the previous
    measurement), and the same figure goes with every endpoint's report of that round."""

    def __init__(self, stats: ServingStats, poll_seconds: float):
        self._stats, self._round = stats, poll_seconds * 0.9
        self._usage: dict[str, Any] = {}
        self._measured = -math.inf
        self._lock = threading.Lock()

    def __call__(self, endpoint: str) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._measured >= self._round:
                self._usage, self._measured = process_usage(), time.monotonic()
            usage = self._usage
        return {"replica": f"{socket.gethostname()}:{os.getpid()}", "window_seconds": REPORT_WINDOW_SECONDS,
                "versions": self._stats.window(endpoint, REPORT_WINDOW_SECONDS), **usage}


def _serving() -> Serving:
    """The process's replica, statistics and prediction log, made on its first request: after gunicorn
    forked, so that their threads run in the worker that serves."""
    app = current_app._get_current_object()
    serving = app.extensions.get(SERVING_KEY)
    if serving is not None:
        return serving
    with _creating:
        if SERVING_KEY not in app.extensions:
            rt = runtime()
            stats = ServingStats(rt.registry)
            poll = rt.settings.replica_poll_seconds
            replica = Replica(fetcher(rt.settings.deployment_url, app), _ServiceToken(app), _loader(rt.settings),
                              _Reports(stats, poll), poll_seconds=poll)
            switch.on_change(replica.refresh_if_served)
            if rt.settings.events_url != "local":
                switch.start_listening(rt.settings.events_url, rt.settings.events_exchange)
            log = PredictionLog(task_sender(rt.settings), rt.settings.task_queue(PREDICTIONS_QUEUE),
                                registry=rt.registry)
            app.extensions[SERVING_KEY] = serving = Serving(replica, stats, log, Mirror(registry=rt.registry))
            rt.closers.append(serving.close)
        return app.extensions[SERVING_KEY]


@blp.route("/<string:name>/predict")
class EndpointPredict(MethodView):
    @requires("data_scientist")
    @blp.arguments(PredictRequestSchema)
    # Documented, not dumped through the schema: the answer is plain JSON values already, and
    # marshmallow's walk over 1,000 rows of probabilities cost more than the model's predictions.
    @blp.alt_response(200, schema=PredictionSchema, description="The predictions and the version that answered.",
                      success=True)
    @blp.alt_response(503, description="Nothing is live on the endpoint.")
    def post(self, body, name: str):
        """Predict with the endpoint's live version (or, during a canary, the version this unit meets)."""
        serving = _serving()
        answer = predictions.predict(replica=serving.replica, stats=serving.stats, prediction_log=serving.log,
                                     mirror=serving.mirror, endpoint=name, body=body, max_rows=runtime().settings.max_predict_rows)
        return answer, 200, {"X-Model-Version": str(answer["model_version"])}


def register(api: Api, rt: Runtime) -> None:
    api.register_blueprint(blp)
