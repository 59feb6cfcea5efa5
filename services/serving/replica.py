"""A serving replica's view of the desired state, and the models it holds in memory.

The control plane (the deployment service) says, per endpoint, which deployments take traffic from
when: the traffic in effect and any switch written ahead (services/deployment/traffic.py). A replica
polls that every `poll_seconds` (the setting `replica_poll_seconds`) for each endpoint it has served, loads the versions named there
(ahead of their switch, so the first request to a new version does not pay its load), and picks the
routes in effect by the clock: every replica switches at the same instant, and an in-flight request
keeps the model object it started with. When the control plane cannot be reached, a replica keeps
serving what it last knew; a lost event or a failed poll only delays a switch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from shared.errors import DomainError, NotFound
from shared.service_client import Fetch, ServiceUnavailable

log = logging.getLogger(__name__)

# A model the desired state has not named for this long is dropped from memory.
IDLE_MODEL_SECONDS = 300.0
# Endpoint names are DNS-1035 labels (services/deployment/deployments.py endpoint_name).
ENDPOINT_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
# How many unknown names a replica remembers (to not ask the control plane again within a poll).
MAX_MISSING = 10_000
# A replica that could not refresh an endpoint for this long still serves it, but says so in its log.
STALE_SECONDS = 30.0


class NothingLive(DomainError):
    status, title, slug = 503, "Nothing is live", "nothing-live"


@dataclass(frozen=True)
class Route:
    deployment_id: str
    version: int
    weight: float  # percent


@dataclass(frozen=True)
class Change:
    """From `effective_at` (epoch seconds), the endpoint's routes, what units are hashed with to place
    them (an A/B test's id; None: the endpoint's name), and the shadow routes that answer a copy of every
    request (a shadow A/B test's B), never returned."""

    effective_at: float
    routes: tuple[Route, ...]
    salt: str | None
    shadows: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Desired:
    """An endpoint's traffic changes in effective order, and how to load each deployment they name (with
    its model's id: an A/B test's arm may be another model's than the endpoint's)."""

    changes: tuple[Change, ...]
    deployments: dict[str, dict[str, Any]]
    fetched_at: float  # monotonic

    def in_effect(self, now: float) -> Change | None:
        current = None
        for change in self.changes:
            if change.effective_at > now:
                break
            current = change
        return current


def parse_desired(body: dict[str, Any]) -> Desired:
    changes = tuple(
        Change(datetime.fromisoformat(change["effective_at"]).timestamp(),
               tuple(Route(r["deployment_id"], r["version"], r["weight"]) for r in change["routes"]
                     if not r.get("shadow")),
               change.get("salt"),
               tuple(Route(r["deployment_id"], r["version"], r["weight"]) for r in change["routes"] if r.get("shadow")))
        for change in body["changes"])
    # A control plane older than per-deployment model ids (a rolling upgrade) names only the endpoint's.
    deployments = {key: {"model_id": body["model_id"], **deployment} for key, deployment in body["deployments"].items()}
    return Desired(changes, deployments, time.monotonic())


class Replica:
    """Per process: the desired state of the endpoints served here, and their loaded models.

    `fetch` reads the control plane's API, `token` gives the bearer token to read it with, `load`
    turns a deployment's description into a model object with `predict`, and `report(endpoint)` is
    what the replica tells the control plane of the endpoint after each poll (its counts per version,
    CPU and memory), which the rollout's observation judges a candidate by.
    """

    def __init__(self, fetch: Fetch, token: Callable[[], str], load: Callable[[dict[str, Any]], Any],
                 report: Callable[[str], dict[str, Any]], *, poll_seconds: float):
        self._fetch, self._token, self._load, self._report = fetch, token, load, report
        self.poll_seconds = poll_seconds
        self._desired: dict[str, Desired] = {}
        self._missing: dict[str, float] = {}  # endpoint -> when the control plane said it does not exist
        self._models: dict[str, Any] = {}  # artifact sha256 -> loaded model
        self._named_at: dict[str, float] = {}  # artifact sha256 -> when a route last named it
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._poller_pid: int | None = None
        self._stopped = threading.Event()

    # ---- the desired state ----------------------------------------------------------------------

    def desired(self, endpoint: str) -> Desired:
        """The endpoint's desired state, read now if this replica has not served it yet."""
        self._ensure_polling()
        known = self._desired.get(endpoint)
        if known is not None:
            return known
        if not ENDPOINT_NAME.fullmatch(endpoint):
            raise NotFound(f"No endpoint is named {endpoint!r}.")  # no name the control plane gives
        missing_since = self._missing.get(endpoint)
        if missing_since is None or time.monotonic() - missing_since > self.poll_seconds:
            self.refresh(endpoint)
        known = self._desired.get(endpoint)
        if known is None:
            raise NotFound(f"No endpoint is named {endpoint!r}.")
        return known

    def refresh_if_served(self, endpoint: str) -> None:
        """Re-read an endpoint this replica serves (a traffic change was announced); others can wait."""
        if endpoint in self._desired:
            self.refresh(endpoint)

    def refresh(self, endpoint: str) -> None:
        """Read the endpoint's desired state from the control plane; keep the last one if it cannot answer."""
        try:
            status, body = self._fetch(f"/api/v1/endpoints/{endpoint}/desired-state",
                                       {"Authorization": f"Bearer {self._token()}"})
        except ServiceUnavailable as exc:
            if endpoint not in self._desired:
                raise NothingLive(f"The deployment service cannot be reached to learn what endpoint {endpoint!r} "
                                  f"serves: {exc.detail}") from exc
            log.warning("serving %s on its last known state: %s", endpoint, exc.detail)
            return
        if status == 404:
            with self._lock:
                self._desired.pop(endpoint, None)
                if len(self._missing) >= MAX_MISSING:  # names asked for at random must not grow it forever
                    self._missing.clear()
                self._missing[endpoint] = time.monotonic()
            return
        if status != 200:
            log.warning("the deployment service answered %s for %s's desired state", status, endpoint)
            if endpoint not in self._desired:
                raise NothingLive(f"The deployment service answered {status} for endpoint {endpoint!r}.")
            return
        desired = parse_desired(body)
        with self._lock:
            self._desired[endpoint] = desired
            self._missing.pop(endpoint, None)
            now = time.monotonic()
            for deployment in desired.deployments.values():
                self._named_at[deployment["artifact_sha256"]] = now

    def _send_report(self, endpoint: str) -> None:
        status, _ = self._fetch(f"/api/v1/endpoints/{endpoint}/reports", {"Authorization": f"Bearer {self._token()}"},
                                self._report(endpoint))
        if status != 204:
            log.warning("the deployment service answered %s to a report on %s", status, endpoint)

    # ---- models ---------------------------------------------------------------------------------

    def model(self, deployment: dict[str, Any]) -> Any:
        """The loaded model of a deployment, loading it once per process."""
        sha256 = deployment["artifact_sha256"]
        model = self._models.get(sha256)
        if model is not None:
            return model
        with self._lock:
            loading = self._loading.setdefault(sha256, threading.Lock())
        with loading:
            model = self._models.get(sha256)
            if model is None:
                model = self._models[sha256] = self._load(deployment)
        return model

    def _preload(self) -> None:
        for desired in list(self._desired.values()):
            for deployment in desired.deployments.values():
                try:
                    self.model(deployment)
                except Exception:  # a model that fails to load here fails its requests, which say why
                    log.exception("could not load version %s", deployment.get("version"))

    def _evict(self) -> None:
        cutoff = time.monotonic() - IDLE_MODEL_SECONDS
        with self._lock:
            # What the known state names stays, however long the control plane has been unreachable.
            named = {d["artifact_sha256"] for desired in self._desired.values() for d in desired.deployments.values()}
            for sha256 in [sha for sha, at in self._named_at.items() if at < cutoff and sha not in named]:
                self._models.pop(sha256, None)
                self._named_at.pop(sha256, None)
                self._loading.pop(sha256, None)

    # ---- polling --------------------------------------------------------------------------------

    def _ensure_polling(self) -> None:
        # Started on first use in each process: a thread started before gunicorn forks does not survive it.
        if self._poller_pid == os.getpid():
            return
        with self._lock:
            if self._poller_pid == os.getpid():
                return
            self._poller_pid = os.getpid()
        threading.Thread(target=self._poll_forever, name="serving-poller", daemon=True).start()

    def _poll_forever(self) -> None:
        while not self._stopped.wait(self.poll_seconds):
            self.poll_once()

    def stop(self) -> None:
        self._stopped.set()

    def poll_once(self) -> None:
        for endpoint in list(self._desired):
            try:
                self.refresh(endpoint)
                self._send_report(endpoint)
            except Exception:  # the poller must outlive any one failure; the next round tries again
                log.exception("refreshing endpoint %s failed", endpoint)
            desired = self._desired.get(endpoint)
            if desired is not None and time.monotonic() - desired.fetched_at > STALE_SECONDS:
                log.warning("endpoint %s: desired state is %.0f s old", endpoint,
                            time.monotonic() - desired.fetched_at)
        self._preload()
        self._evict()


def bucket(salt: str, unit: str) -> float:
    """Where a unit falls in [0, 100), in steps of 0.01: stable for the unit under one salt (the
    endpoint's name, or an A/B test's id), uniform across units, unrelated from one salt to another."""
    digest = hashlib.blake2b(f"{salt}\x00{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100.0


def choose(routes: tuple[Route, ...], point: float) -> Route:
    """The route whose share of [0, 100) holds `point`; the candidate is listed first, so a unit that
    met it at 10% keeps meeting it at 50%."""
    total = 0.0
    for route in routes:
        total += route.weight
        if point < round(total, 2):  # weights are hundredths: 0.1 + 0.2 ends at 0.3, not a slot past it
            return route
    return routes[-1]
