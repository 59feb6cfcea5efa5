"""The platform most integration tests drive: the all-in-one app on this run's servers, emptied after each test."""

from __future__ import annotations

import pytest

from tests.support.auth import make_user
from tests.support.registry import bearer


@pytest.fixture
def app(settings_overrides, clean_db, make_app):
    return make_app(settings_overrides)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ds(app):
    """Bearer headers of a data scientist, the role that makes most registry writes."""
    return bearer(app, "data_scientist", "dana")


@pytest.fixture
def admin(app):
    """Bearer headers of `root`, an admin with a user row (so identity's own checks see a real user)."""
    return make_user(app, "admin", username="root")[1]
