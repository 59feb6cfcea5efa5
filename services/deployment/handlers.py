"""Deployment's reactions to other services' events: monitoring's verdicts on A/B tests conclude them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from services.deployment import ab_tests
from shared.events.consumer import EventConsumer


class ABTestDecisions(EventConsumer):
    name = "deployment.ab_tests"
    routing_keys = ("abtest.decided",)

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        ab_tests.decided(session, uuid.UUID(str(payload["ab_test_id"])), payload["verdict"], payload["summary"])
