"""The throttle on its own: what it counts, under which name, and what it does when its storage is gone."""

from __future__ import annotations

import pytest

from shared.config import load_settings
from shared.errors import TooManyRequests
from shared.throttling import Throttle, login_name


def _throttle(**overrides) -> Throttle:
    return Throttle(load_settings({"login_failures_per_user": "2 per minute", **overrides}, environ={}))


def test_login_names_are_counted_without_case_or_width():
    assert login_name("BOB") == login_name("Bob") == login_name("\uff22\uff4f\uff42") == "bob"


def test_only_failures_count_towards_a_login_refusal():
    throttle = _throttle()
    for _ in range(5):
        throttle.admit_login(username="ann", address="192.0.2.1")  # admitting counts nothing
    throttle.count_failed_login(username="ann", address="192.0.2.1")
    throttle.count_failed_login(username="ANN", address="192.0.2.1")
    with pytest.raises(TooManyRequests) as refused:
        throttle.admit_login(username="Ann", address="192.0.2.9")
    assert 1 <= refused.value.retry_after <= 60


def test_a_throttle_whose_storage_is_unreachable_admits_rather_than_fails():
    throttle = _throttle(redis_url="redis://127.0.0.1:9/0", requests_per_principal="1 per minute")
    for _ in range(3):
        throttle.count_failed_login(username="ann", address="192.0.2.1")
        throttle.admit_login(username="ann", address="192.0.2.1")
        throttle.admit_request(principal="someone")
