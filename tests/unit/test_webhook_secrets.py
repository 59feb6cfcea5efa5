"""Webhook secrets sealed at rest: they open with the key that sealed them, for their own rule only, after
a key rotation, and not once their key is gone or a byte changed; one stored before sealing reads as is."""

from __future__ import annotations

import base64
import os
import secrets
import uuid

import pytest

from services.monitoring.webhook_secrets import SecretUnreadable, seal, unseal


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


OLD, NEW = _key("k1"), _key("k2")


def test_a_sealed_secret_opens_for_its_rule_and_after_a_rotation():
    secret, rule = secrets.token_urlsafe(32), uuid.uuid4()
    stored = seal(secret, keys=OLD, rule_id=rule)
    assert secret not in stored and stored.startswith("k1:") and len(stored) <= 255
    assert unseal(stored, keys=OLD, rule_id=rule) == secret
    assert unseal(stored, keys=f"{NEW},{OLD}", rule_id=rule) == secret  # the new key seals, the old still opens
    assert seal(secret, keys=f"{NEW},{OLD}", rule_id=rule).startswith("k2:")


def test_a_secret_does_not_open_for_another_rule_without_its_key_or_altered():
    rule = uuid.uuid4()
    stored = seal("s3cret", keys=OLD, rule_id=rule)
    with pytest.raises(SecretUnreadable, match="altered"):
        unseal(stored, keys=OLD, rule_id=uuid.uuid4())
    with pytest.raises(SecretUnreadable, match="'k1'.*not configured"):
        unseal(stored, keys=NEW, rule_id=rule)
    altered = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]
    with pytest.raises(SecretUnreadable, match="altered"):
        unseal(altered, keys=OLD, rule_id=rule)


def test_a_secret_stored_before_sealing_reads_as_it_is():
    secret = secrets.token_urlsafe(32)
    assert unseal(secret, keys=OLD, rule_id=uuid.uuid4()) == secret
