"""Webhook secrets at rest: sealed with the platform's artifact keys (MODELYARD_ARTIFACT_KEYS), as
artifacts are, so that a copy of the database alone cannot sign a webhook as Modelyard.

Stored as `<key id>:<base64 of nonce | AES-256-GCM ciphertext>`, the rule's id bound in as associated
data (a sealed secret copied onto another rule does not open). The first configured key seals and
every configured key opens, so keys rotate as artifacts' do. A secret stored before sealing (migration
0022) has no key id, and is read as it is: a token_urlsafe secret never holds a colon.
"""

from __future__ import annotations

import base64
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.artifacts import parse_keys
from shared.errors import IntegrityFailure

NONCE_SIZE = 12


class SecretUnreadable(IntegrityFailure):
    """The sealed secret does not open: its key is no longer configured, or it was altered."""

    title, slug = "Webhook secret unreadable", "webhook-secret-unreadable"


def seal(secret: str, *, keys: str, rule_id: uuid.UUID) -> str:
    key_id, key = next(iter(parse_keys(keys).items()))
    nonce = os.urandom(NONCE_SIZE)
    sealed = nonce + AESGCM(key).encrypt(nonce, secret.encode(), rule_id.bytes)
    return f"{key_id}:{base64.urlsafe_b64encode(sealed).decode()}"


def unseal(stored: str, *, keys: str, rule_id: uuid.UUID) -> str:
    key_id, colon, encoded = stored.partition(":")
    if not colon:
        return stored  # stored before sealing
    key = parse_keys(keys).get(key_id)
    if key is None:
        raise SecretUnreadable(f"The webhook secret of alert rule {rule_id} was sealed with the key {key_id!r}, "
                               "which is not configured (MODELYARD_ARTIFACT_KEYS).")
    try:
        sealed = base64.urlsafe_b64decode(encoded)
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], rule_id.bytes).decode()
    except (InvalidTag, ValueError):
        raise SecretUnreadable(f"The webhook secret of alert rule {rule_id} does not open: altered.") from None
