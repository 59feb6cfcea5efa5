"""What the serving autoscaler reads: the endpoints, with a token it mints from the platform's secret."""

import uuid

import pytest

from launch.autoscale import read_all, token_minter
from shared.config import load_settings
from shared.service_client import ServiceUnavailable, in_process

pytestmark = pytest.mark.integration


def test_the_minted_viewer_token_reads_the_endpoints_and_deployments(app, settings_overrides):
    token = token_minter(load_settings(settings_overrides))()
    fetch = in_process(app)
    assert read_all(fetch, token, "/api/v1/endpoints") == []
    status, _ = fetch(f"/api/v1/deployments/{uuid.uuid4()}", {"Authorization": f"Bearer {token}"})
    assert status == 404  # authenticated and allowed; there is just no such deployment


def test_a_token_signed_with_another_secret_is_refused(app, settings_overrides):
    token = token_minter(load_settings({**settings_overrides, "jwt_secret": "another-secret-0123456789abcdef-0123456789"}))()
    with pytest.raises(ServiceUnavailable, match="answered 401"):
        read_all(in_process(app), token, "/api/v1/endpoints")
