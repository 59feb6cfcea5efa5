"""How a sensitive feature's value is stored: a keyed hash per model and feature, or its profile bin."""

import hashlib
import hmac
import json
import uuid

import numpy as np

from services.monitoring.sensitive import DEVELOPMENT_KEY, Protector, bin_labels, platform_key

KEY = b"unit-test-key"
MODEL = uuid.UUID("00000000-0000-0000-0000-000000000001")
EDGES = [0.0, 0.5, 1.2, 4.0]


def _protector(model_id: uuid.UUID = MODEL, key: bytes = KEY, **kwargs) -> Protector:
    return Protector(key=key, model_id=model_id, features=["plan", "region", "income"],
                     **{"kinds": {"plan": "categorical", "region": "categorical", "income": "numeric"},
                        "bin_edges": {"income": EDGES}, **kwargs})


def test_a_categorical_value_is_its_hmac_under_a_key_for_its_model_and_feature():
    derived = hmac.new(KEY, json.dumps([str(MODEL), "plan"]).encode(), hashlib.sha256).digest()
    expected = "hmac:" + hmac.new(derived, b"pro", hashlib.sha256).hexdigest()[:32]
    protector = _protector()
    assert protector.value("plan", "pro") == expected
    assert protector.value("plan", "pro") == _protector().value("plan", "pro")  # stable: drift can count it
    assert protector.value("plan", "pro") != protector.value("plan", "basic")
    # The same value of another feature, another model, or under another key does not match.
    assert protector.value("region", "pro") != expected
    assert _protector(uuid.uuid4()).value("plan", "pro") != expected
    assert _protector(key=b"another key").value("plan", "pro") != expected


def test_a_category_read_back_from_the_reference_csv_hashes_as_the_json_value_does():
    protector = _protector()
    assert protector.value("plan", 1.0) == protector.value("plan", 1) == protector.value("plan", "1")
    assert protector.value("plan", True) == protector.value("plan", "True")


def test_a_numeric_value_is_its_bin_as_numpy_histogram_bins_it_and_outside_values_have_their_own():
    labels, below, above = bin_labels(EDGES)
    assert labels == ["[0.0, 0.5)", "[0.5, 1.2)", "[1.2, 4.0]"] and (below, above) == ("< 0.0", "> 4.0")
    values = np.random.default_rng(0).uniform(0, 4, 500).tolist() + EDGES
    counts = np.histogram(values, bins=EDGES)[0]
    stored = [_protector().value("income", value) for value in values]
    assert [stored.count(label) for label in labels] == counts.tolist()
    assert _protector().value("income", -0.1) == below and _protector().value("income", 4.01) == above
    assert bin_labels([3.0]) == (["[3.0, 3.0]"], "< 3.0", "> 3.0")


def test_missing_stays_missing_and_what_cannot_be_protected_is_dropped():
    protector = _protector()
    assert [protector.value("plan", value) for value in (None, float("nan"), ["a"], {"a": 1})] == [None] * 4
    assert [protector.value("income", value) for value in (None, float("nan"), "high", True)] == [None] * 4
    # No profile (an uploaded version): numbers cannot be binned, so they are dropped; text is hashed.
    unprofiled = _protector(kinds=None, bin_edges=None)
    assert unprofiled.value("income", 42.5) is None and unprofiled.value("plan", 3) is None
    assert unprofiled.value("plan", "pro") == _protector().value("plan", "pro")
    # Profiled as numeric, but training saw no finite value: no bins to store it as.
    assert _protector(bin_edges={}).value("income", 1.0) is None


def test_features_not_sensitive_are_kept_as_sent():
    protected = _protector().features({"plan": "pro", "age": 41, "income": 0.7})
    assert protected["age"] == 41 and protected["income"] == "[0.5, 1.2)" and protected["plan"].startswith("hmac:")


def test_without_a_configured_key_development_uses_a_fixed_one():
    assert platform_key("") == DEVELOPMENT_KEY.encode() and platform_key("k") == b"k"
