"""Password hashing with scrypt (stdlib), stored as a self-describing string.

Format: `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can rise later and old hashes
still verify with the parameters they were made with.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
# n=2**14, r=8 uses 16 MiB and about 30 ms per hash on one core: slow for guessing, fine for logins.
COST_N, BLOCK_R, PARALLEL_P = 1 << 14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
MAX_MEMORY = 64 << 20


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=MAX_MEMORY)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, COST_N, BLOCK_R, PARALLEL_P)
    return f"{SCHEME}${COST_N}${BLOCK_R}${PARALLEL_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches `stored`; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def decoy_hash() -> str:
    """A hash checked when the user does not exist, so an unknown name costs as much as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))
