"""The event catalogue: envelopes are built from valid payloads only, and unreadable messages are named."""

import json
import uuid

import pytest
from marshmallow import ValidationError

from shared.events.catalogue import (
    CATALOGUE,
    SCHEMA_VERSION,
    MalformedEvent,
    UnknownEventType,
    build_envelope,
    parse_envelope,
    validate_payload,
)


def dataset_payload(**changes):
    return {"dataset_id": uuid.uuid4(), "name": "iris", "sha256": "ab" * 32, "rows": 150, "actor": "alice",
            **changes}


def test_issue_two_event_types_are_in_the_catalogue():
    assert {"model.created", "model.updated", "model.archived", "model_version.registered",
            "model_version.alias_set", "dataset.registered"} <= set(CATALOGUE)


def test_a_removed_alias_has_its_own_event_and_a_set_one_always_names_its_version():
    model_id = uuid.uuid4()
    removed = validate_payload("model_version.alias_removed",
                               {"model_id": model_id, "alias": "champion", "previous_version": 3, "actor": "dana"})
    assert removed == {"model_id": str(model_id), "alias": "champion", "previous_version": 3, "actor": "dana"}
    with pytest.raises(ValidationError) as error:
        validate_payload("model_version.alias_set",
                         {"model_id": model_id, "alias": "champion", "previous_version": 3, "actor": "dana"})
    assert "version" in error.value.messages


def test_an_envelope_carries_id_type_time_producer_version_and_a_json_ready_payload():
    payload = dataset_payload()
    envelope = build_envelope("dataset.registered", payload, producer="registry")
    assert uuid.UUID(envelope["id"])
    assert envelope["type"] == "dataset.registered"
    assert envelope["producer"] == "registry"
    assert envelope["schema_version"] == SCHEMA_VERSION
    assert envelope["payload"]["dataset_id"] == str(payload["dataset_id"])
    assert json.loads(json.dumps(envelope)) == envelope


def test_an_event_type_outside_the_catalogue_cannot_be_built():
    with pytest.raises(UnknownEventType):
        build_envelope("model.exploded", {}, producer="registry")


def test_a_payload_missing_a_required_field_cannot_be_built():
    payload = dataset_payload()
    del payload["sha256"]
    with pytest.raises(ValidationError) as error:
        validate_payload("dataset.registered", payload)
    assert "sha256" in error.value.messages


def test_a_received_envelope_round_trips_through_json():
    envelope = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    assert parse_envelope(json.dumps(envelope).encode()) == envelope


def test_fields_added_later_to_an_envelope_or_payload_are_tolerated():
    envelope = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    newer = {**envelope, "trace_id": "t-1", "payload": {**envelope["payload"], "columns": 5}}
    assert parse_envelope(json.dumps(newer))["id"] == envelope["id"]


@pytest.mark.parametrize("body, reason", [
    (b"\x00not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"type": "dataset.registered", "payload": {}}).encode(), "id"),
    (json.dumps({"id": "not-a-uuid", "type": "dataset.registered", "occurred_at": "2025-01-01T00:00:00+00:00",
                 "producer": "x", "schema_version": 1, "payload": {}}).encode(), "id"),
])
def test_a_body_that_is_not_an_envelope_is_malformed(body, reason):
    with pytest.raises(MalformedEvent) as error:
        parse_envelope(body)
    assert reason in str(error.value)


def test_an_envelope_of_an_unknown_type_or_with_a_broken_payload_is_malformed():
    envelope = build_envelope("dataset.registered", dataset_payload(), producer="registry")
    with pytest.raises(MalformedEvent, match="not in the event catalogue"):
        parse_envelope(json.dumps({**envelope, "type": "dataset.vanished"}))
    with pytest.raises(MalformedEvent, match="rows"):
        parse_envelope(json.dumps({**envelope, "payload": {**envelope["payload"], "rows": "many"}}))


def test_a_training_completed_event_carries_the_features_trained_on_and_older_ones_without_them_still_parse():
    payload = {"job_id": uuid.uuid4(), "model_id": uuid.uuid4(), "artifact_sha256": "ab" * 32, "dataset_id": None,
               "dataset_sha256": "cd" * 32, "estimator": "ridge", "best_params": {}, "cv_metrics": {},
               "test_metrics": {}, "random_state": 0, "library_versions": {}, "profile": {}, "actor": "alice"}
    current = build_envelope("training.completed", {**payload, "features": ["tenure", "plan"]}, producer="training")
    assert current["payload"]["features"] == ["tenure", "plan"]
    older = build_envelope("training.completed", payload, producer="training")
    assert "features" not in older["payload"]
    assert parse_envelope(json.dumps(older)) == older
    with pytest.raises(MalformedEvent, match="features"):
        parse_envelope(json.dumps({**current, "payload": {**current["payload"], "features": "tenure,plan"}}))
