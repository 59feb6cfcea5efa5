"""An upload's digest for Idempotency-Key leaves out the multipart boundary, whichever way reads split it."""

import hashlib
import io

import pytest

from shared.idempotency import _BoundaryFreeDigest

BODY = b'--b0undary\r\nContent-Disposition: form-data; name="artifact"\r\n\r\nweights\r\n--b0undary--\r\n' * 40


@pytest.mark.parametrize("read_size", [1, 3, 9, 10, 64, 1 << 20])
def test_the_digest_is_the_body_without_its_boundary_for_any_read_size(read_size):
    digest = _BoundaryFreeDigest(io.BytesIO(BODY), b"b0undary")
    read = b""
    while chunk := digest.read(read_size):
        read += chunk
    assert read == BODY  # the parser still gets every byte
    assert digest.hexdigest() == hashlib.sha256(BODY.replace(b"b0undary", b"")).hexdigest()


def test_two_sends_with_different_boundaries_digest_alike():
    other = BODY.replace(b"b0undary", b"another-boundary-123")
    first, second = _BoundaryFreeDigest(io.BytesIO(BODY), b"b0undary"), \
        _BoundaryFreeDigest(io.BytesIO(other), b"another-boundary-123")
    first.read(), second.read()
    assert first.hexdigest() == second.hexdigest()
