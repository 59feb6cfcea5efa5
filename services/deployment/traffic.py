"""Where an endpoint's traffic goes, when: switches written ahead, and the history behind them.

Serving replicas poll the desired state every couple of seconds. Were a switch effective the moment
it is written, replicas would learn of it at different times, and a client alternating between them
would see the new version, then the old one, then the new. So a planned switch is written
`switch_ahead_seconds` (a setting, 3 by default) into the future, longer than a poll: every replica holds it (and has loaded the
candidate) before it takes effect, and all of them switch at the same instant by the clock. A
rollback cannot wait: it takes effect at once and withdraws any switch still ahead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.deployment.tables import Endpoint, TrafficChange
from shared.db import utcnow
from shared.events.outbox import emit

PRODUCER = "deployment"


def route(deployment_id: uuid.UUID, version: int, weight: float, *, shadow: bool = False) -> dict:
    """A share of the endpoint's traffic: `weight` percent (0.5 is half a percent), to the hundredth,
    which is as fine as serving places units (services/serving/replica.py bucket). A shadow route (a
    shadow A/B test's B) answers a copy of every request besides the other routes, and its answers are
    recorded, never returned: its weight is 100, and the others' still add up to 100 without it."""
    if shadow:
        return {"deployment_id": str(deployment_id), "version": version, "weight": 100.0, "shadow": True}
    return {"deployment_id": str(deployment_id), "version": version, "weight": round(float(weight), 2)}


def switch(session: Session, endpoint: Endpoint, routes: list[dict], *, reason: str,
           deployment_id: uuid.UUID | None, ahead_seconds: float = 0.0, salt: str | None = None) -> TrafficChange:
    """Send the endpoint's traffic to `routes` from `ahead_seconds` on; with none, at once, withdrawing
    any switch still ahead (a rollback). Units are placed by a hash salted with `salt` (at most 64
    characters; None: the endpoint's name): the same salt keeps each unit on its route from one change
    to the next, a new one draws them afresh."""
    now = utcnow()
    if not ahead_seconds:
        session.execute(sa.delete(TrafficChange).where(TrafficChange.endpoint_id == endpoint.id,
                                                       TrafficChange.effective_at > now))
    change = TrafficChange(endpoint_id=endpoint.id, routes=[r for r in routes if r["weight"] > 0], reason=reason,
                           deployment_id=deployment_id, salt=salt,
                           effective_at=now + timedelta(seconds=ahead_seconds))
    session.add(change)
    emit(session, "endpoint.traffic_changed", {
        "endpoint": endpoint.name, "model_id": endpoint.model_id, "routes": change.routes,
        "effective_at": change.effective_at, "reason": reason, "deployment_id": deployment_id, "salt": salt,
    }, producer=PRODUCER)
    return change


def aware(moment: datetime) -> datetime:
    """A stored time with its zone: SQLite hands back naive times, and every time stored here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


@dataclass(frozen=True)
class Served:
    """The traffic in effect at a moment: its routes, since when, and until when (None: still)."""

    change: TrafficChange | None
    until: datetime | None


def served_at(session: Session, endpoint_id: uuid.UUID, at: datetime) -> Served:
    in_effect = session.scalar(
        sa.select(TrafficChange).where(TrafficChange.endpoint_id == endpoint_id, TrafficChange.effective_at <= at)
        .order_by(TrafficChange.effective_at.desc(), TrafficChange.id.desc()).limit(1))
    following = session.scalar(
        sa.select(TrafficChange.effective_at).where(TrafficChange.endpoint_id == endpoint_id,
                                                    TrafficChange.effective_at > at)
        .order_by(TrafficChange.effective_at, TrafficChange.id).limit(1))
    return Served(in_effect, aware(following) if following else None)


def ahead(session: Session, endpoint_id: uuid.UUID, now: datetime) -> list[TrafficChange]:
    """Switches written ahead that have not taken effect yet, in order."""
    return list(session.scalars(
        sa.select(TrafficChange).where(TrafficChange.endpoint_id == endpoint_id, TrafficChange.effective_at > now)
        .order_by(TrafficChange.effective_at, TrafficChange.id)))


def effective_at(change: TrafficChange) -> datetime:
    return aware(change.effective_at)

