"""Monitoring's reactions to other services' events: a registered version's baseline is kept here
(tables.VersionBaseline), so that drift and concept drift need not ask the registry; each model's list
of sensitive features (tables.SensitiveFeatures), which ingestion protects; and what alerts watch beside
predictions: the serving replicas' CPU and memory (tables.ReplicaUsage), and each model's live
deployment's alert thresholds as rules (deployment_rules.py); the models deleted, whose alerts
resolve (tables.DeletedModel); and the A/B tests started, which monitoring analyses until they end
(tables.ABTestAnalysis, ab_analysis.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.monitoring.deployment_rules import follow_deployment
from services.monitoring.tables import ABTestAnalysis, DeletedModel, ReplicaUsage, SensitiveFeatures, VersionBaseline
from shared.db import utcnow
from shared.events.consumer import EventConsumer


class VersionBaselines(EventConsumer):
    name = "monitoring.versions"
    routing_keys = ("model_version.registered", "model_version.deleted", "model.deleted")

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        key = {"model_id": uuid.UUID(str(payload["model_id"]))}
        if envelope["type"] != "model.deleted":
            key["version"] = payload["version"]
        # A redelivered registration finds its row; a deletion of a version never seen deletes nothing.
        session.execute(sa.delete(VersionBaseline).filter_by(**key))
        if envelope["type"] == "model_version.registered":
            session.add(VersionBaseline(
                **key, model_type=payload.get("model_type"), metrics=payload.get("metrics"),
                reference_sha256=payload.get("reference_sha256"), reference_rows=payload.get("reference_rows"),
                feature_kinds=payload.get("feature_kinds"), feature_importances=payload.get("feature_importances"),
                bin_edges=payload.get("bin_edges")))


class SensitiveFeatureLists(EventConsumer):
    name = "monitoring.sensitive_features"
    routing_keys = ("model.created", "model.updated", "model.archived", "model.deleted")

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        model_id = uuid.UUID(str(payload["model_id"]))
        if envelope["type"] == "model.deleted":
            session.execute(sa.delete(SensitiveFeatures).where(SensitiveFeatures.model_id == model_id))
            return
        if "sensitive_features" not in payload:
            return  # an event from before models had the list: theirs was empty (migration 0018)
        # In UTC: SQLite keeps a time's wall clock and drops its zone, and compares the text.
        changed_at = datetime.fromisoformat(envelope["occurred_at"]).astimezone(timezone.utc)
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(SensitiveFeatures).values(
            model_id=model_id, features=list(payload["sensitive_features"]), changed_at=changed_at)
        # Events may arrive out of order: only a list announced at least as late as the stored one replaces it.
        session.execute(statement.on_conflict_do_update(
            index_elements=["model_id"],
            set_={"features": statement.excluded.features, "changed_at": statement.excluded.changed_at},
            where=SensitiveFeatures.changed_at <= statement.excluded.changed_at))


class AlertSources(EventConsumer):
    name = "monitoring.alerts"
    routing_keys = ("endpoint.usage_reported", "deployment.live", "deployment.rolled_back", "model.deleted")

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        if envelope["type"] == "model.deleted":
            # Noted here; beat's next evaluation resolves the model's alerts and announces it everywhere
            # an alert is announced (events, webhooks), which a consumer cannot (it sends no tasks).
            model_id = uuid.UUID(str(payload["model_id"]))
            if session.get(DeletedModel, model_id) is None:
                session.add(DeletedModel(model_id=model_id, deleted_at=utcnow()))
            session.execute(sa.delete(ReplicaUsage).where(ReplicaUsage.model_id == model_id))
            return
        if envelope["type"] in ("deployment.live", "deployment.rolled_back"):
            if "live_alert_thresholds" in payload:  # older events do not say
                live = payload.get("live_deployment_id")
                follow_deployment(session, model_id=uuid.UUID(str(payload["model_id"])),
                                  deployment_id=uuid.UUID(str(live)) if live else None,
                                  environment=payload["environment"], thresholds=payload["live_alert_thresholds"],
                                  now=utcnow())
            return
        # The endpoint's replicas as the deployment service last heard them: one gone quiet is dropped.
        session.execute(sa.delete(ReplicaUsage).where(ReplicaUsage.endpoint == payload["endpoint"]))
        model_id = uuid.UUID(str(payload["model_id"]))
        session.add_all(ReplicaUsage(endpoint=payload["endpoint"], replica=replica["replica"], model_id=model_id,
                                     cpu_percent=replica.get("cpu_percent"),
                                     memory_percent=replica.get("memory_percent"),
                                     reported_at=datetime.fromisoformat(replica["reported_at"]))
                        for replica in payload["replicas"])


class ABTestAnalyses(EventConsumer):
    name = "monitoring.ab_tests"
    routing_keys = ("abtest.started", "abtest.stopped", "abtest.concluded")

    def handle(self, session: Session, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        test_id = uuid.UUID(str(payload["ab_test_id"]))
        test = session.get(ABTestAnalysis, test_id)
        if envelope["type"] == "abtest.started":
            if test is None:  # a test starts once: a second start event is a redelivery
                session.add(ABTestAnalysis(
                    ab_test_id=test_id, name=payload["name"], type=payload["type"], endpoint=payload["endpoint"],
                    model_type=payload["model_type"], model_a_id=uuid.UUID(str(payload["model_a_id"])),
                    version_a=payload["version_a"], model_b_id=uuid.UUID(str(payload["model_b_id"])),
                    version_b=payload["version_b"], traffic_split=payload["traffic_split"],
                    success_metrics=list(payload["success_metrics"]),
                    guardrail_metrics=[dict(guardrail) for guardrail in payload["guardrail_metrics"]],
                    min_sample_size=payload["min_sample_size"], max_duration_days=payload["max_duration_days"],
                    significance_level=payload["significance_level"], mixing_variance=payload["mixing_variance"],
                    minimum_detectable_effect=payload.get("minimum_detectable_effect"),
                    started_at=datetime.fromisoformat(payload["started_at"]).astimezone(timezone.utc)))
            return
        if test is None or test.ended_at is not None:
            return
        # Its window closes when the event happened: the endpoint serves A alone from then on.
        test.ended_at = datetime.fromisoformat(envelope["occurred_at"]).astimezone(timezone.utc)
        if envelope["type"] == "abtest.concluded" and test.verdict is None:
            # Concluded by the deployment service itself (B's arm failed): the results say so.
            test.verdict, test.summary = payload["verdict"], payload["summary"]


def ab_test_analyses() -> ABTestAnalyses:
    """The consumer as `shared.events.runner` and the relay load it."""
    return ABTestAnalyses()


def alert_sources() -> AlertSources:
    """The consumer as `shared.events.runner` and the relay load it."""
    return AlertSources()


def version_baselines() -> VersionBaselines:
    """The consumer as `shared.events.runner` and the relay load it."""
    return VersionBaselines()


def sensitive_feature_lists() -> SensitiveFeatureLists:
    """The consumer as `shared.events.runner` and the relay load it."""
    return SensitiveFeatureLists()
