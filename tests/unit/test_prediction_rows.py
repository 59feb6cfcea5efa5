"""A prediction record's row as ingestion checks it: the quick path for objects and lists of finite numbers
gives what the general walk gives, and leaves to it everything else."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from services.monitoring.ingestion import JSON_DEPTH, BadRecord, prediction_row

NOW = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)


def record(**fields):
    return {"model_id": "6cda4af4-0d43-48df-8ad9-ab90c3675875", "version": 1, "request_id": "r1", "prediction": 1,
            "predicted_at": "2026-12-05T11:00:00+00:00", **fields}


@pytest.mark.parametrize("features, stored", [
    ({"a": 1.5, "b": -2, "c": 0}, {"a": 1.5, "b": -2, "c": 0}),
    ({"a": math.nan, "b": 1.0}, {"a": None, "b": 1.0}),  # missing, as the issue asks
    ({"a": math.inf, "b": -math.inf}, {"a": None, "b": None}),
    ({"a": 1e308, "b": 1e308}, {"a": 1e308, "b": 1e308}),  # a sum past the largest float: each is finite
    ({"a": 10**400, "b": 0.5}, {"a": 10**400, "b": 0.5}),  # too large for a float, still an integer
    ({"a": True, "b": 2.0}, {"a": True, "b": 2.0}),
    ({"a": "x", "b": None, "c": [1, math.nan]}, {"a": "x", "b": None, "c": [1, None]}),
    ({}, {}),
])
def test_features_are_stored_with_nan_and_infinity_as_missing(features, stored):
    row = prediction_row(record(features=features), received_at=NOW)
    assert row["features"] == stored
    assert [type(value) for value in row["features"].values()] == [type(value) for value in stored.values()]
    assert row["features"] is not features  # the stored object is a copy: protecting it leaves the record


@pytest.mark.parametrize("probabilities", [{"0": 0.4, "1": math.nan}, [0.4, math.inf], {"0": {"1": -math.inf}}])
def test_a_number_json_cannot_hold_outside_features_refuses_the_record(probabilities):
    with pytest.raises(BadRecord, match="probabilities: .* is not a number JSON can hold"):
        prediction_row(record(probabilities=probabilities), received_at=NOW)


@pytest.mark.parametrize("probabilities", [{"0": 0.25, "1": 0.75}, [0.25, 0.75], [10**400, 1.0], [], {"a": [1, 2]}])
def test_objects_and_lists_of_numbers_are_kept_as_they_are(probabilities):
    assert prediction_row(record(probabilities=probabilities), received_at=NOW)["probabilities"] == probabilities


def test_nesting_is_limited_the_same_with_numbers_or_without():
    def nested(depth, inner):
        value = inner
        for _ in range(depth):
            value = {"k": value}
        return value

    for inner in ([1.0, 2.0], ["a", "b"]):
        prediction_row(record(context=nested(JSON_DEPTH - 1, inner)), received_at=NOW)
        with pytest.raises(BadRecord, match="nested deeper"):
            prediction_row(record(context=nested(JSON_DEPTH, inner)), received_at=NOW)


def test_a_feature_name_must_be_a_string_whatever_the_values():
    with pytest.raises(BadRecord, match="object keys are strings"):
        prediction_row(record(features={1: 0.5}), received_at=NOW)
