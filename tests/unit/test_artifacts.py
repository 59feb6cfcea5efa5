"""The artifact store on a temp directory: encryption at rest, integrity, key rotation, limits."""

import base64
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from shared.artifacts import CHUNK_SIZE, TAG_SIZE, ArtifactKeyMissing, ArtifactStore, StoredBlob, parse_keys
from shared.config import ConfigError, load_settings
from shared.errors import IntegrityFailure, NotFound, PayloadTooLarge

K1 = os.urandom(32)
K2 = os.urandom(32)
# Two full chunks and part of a third, recognisable so "the ciphertext does not contain it" means something.
MULTI_CHUNK = (b"modelyard plaintext block " * 100_000)[: 2 * CHUNK_SIZE + 12_345]


def keys(*pairs):
    return ",".join(f"{kid}:{base64.urlsafe_b64encode(key).decode()}" for kid, key in pairs)


def store_at(root: Path, *pairs, max_bytes=None) -> ArtifactStore:
    return ArtifactStore(root, parse_keys(keys(*pairs)), max_bytes=max_bytes)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return store_at(tmp_path, ("k1", K1))


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def blob_path(store: ArtifactStore, sha256: str) -> Path:
    return store.root / sha256[:2] / sha256[2:4] / sha256


def body_offset(path: Path, plaintext_size: int = len(MULTI_CHUNK), chunks: int = 3) -> int:
    """Where the chunk records start: the file size minus the ciphertext and one tag per chunk."""
    return path.stat().st_size - plaintext_size - chunks * TAG_SIZE


@pytest.mark.parametrize("data", [b"", b"x", b"small model bytes", MULTI_CHUNK, b"z" * CHUNK_SIZE],
                         ids=["empty", "one-byte", "small", "three-chunks", "exactly-one-chunk"])
def test_bytes_stored_come_back_identical_and_addressed_by_their_sha256(store, data):
    blob = store.put_bytes(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert (blob.size, blob.key_id, blob.created) == (len(data), "k1", True)
    assert store.exists(blob.sha256)
    assert store.read_bytes(blob.sha256) == data
    store.verify(blob.sha256)


def test_a_stream_that_returns_short_reads_is_stored_whole(store):
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def read(self, size=-1):
            return self._data.read(min(size, 4096))

    blob = store.put_stream(Trickle(MULTI_CHUNK))
    assert store.read_bytes(blob.sha256) == MULTI_CHUNK


def test_streamed_plaintext_comes_in_the_requested_chunk_size(store):
    blob = store.put_bytes(MULTI_CHUNK)
    pieces = list(store.iter_bytes(blob.sha256, chunk_size=1_000_000))
    assert b"".join(pieces) == MULTI_CHUNK
    assert {len(piece) for piece in pieces[:-1]} == {1_000_000}


def test_stored_bytes_are_encrypted_and_never_contain_the_plaintext(store):
    blob = store.put_bytes(MULTI_CHUNK)
    raw = blob_path(store, blob.sha256).read_bytes()
    assert raw != MULTI_CHUNK
    assert b"modelyard plaintext" not in raw
    assert MULTI_CHUNK[CHUNK_SIZE:CHUNK_SIZE + 64] not in raw


def test_the_same_bytes_stored_twice_are_kept_once(store, tmp_path):
    first = store.put_bytes(b"dataset,rows\n1,2\n")
    second = store.put_stream(io.BytesIO(b"dataset,rows\n1,2\n"))
    assert (first.created, second.created) == (True, False)
    assert first.sha256 == second.sha256
    assert len(stored_files(tmp_path)) == 1


def test_concurrent_puts_of_the_same_bytes_all_succeed_with_one_readable_copy(store, tmp_path):
    results, errors = [], []

    def put():
        try:
            results.append(store.put_bytes(MULTI_CHUNK))
        except Exception as exc:  # collected so the assertion below can show it
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {blob.sha256 for blob in results} == {hashlib.sha256(MULTI_CHUNK).hexdigest()}
    assert len(stored_files(tmp_path)) == 1
    assert store.read_bytes(results[0].sha256) == MULTI_CHUNK


def test_a_flipped_byte_in_any_chunk_is_refused_as_an_integrity_failure(store):
    blob = store.put_bytes(MULTI_CHUNK)
    path = blob_path(store, blob.sha256)
    original = path.read_bytes()
    for position in (body_offset(path) + 10, body_offset(path) + CHUNK_SIZE + 100, len(original) - 1):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises(IntegrityFailure, match=f"artifact {blob.sha256} failed its integrity check"):
            store.verify(blob.sha256)
        with pytest.raises(IntegrityFailure):
            store.iter_bytes(blob.sha256)
        with pytest.raises(IntegrityFailure):
            store.read_bytes(blob.sha256)


def test_a_tampered_header_is_refused(store):
    blob = store.put_bytes(b"model")
    path = blob_path(store, blob.sha256)
    raw = bytearray(path.read_bytes())
    raw[body_offset(path, len(b"model"), 1) - 1] ^= 0x01  # the last byte of the nonce prefix
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityFailure):
        store.verify(blob.sha256)


@pytest.mark.parametrize("cut", ["last-chunk", "mid-chunk", "header-only", "empty-file"])
def test_a_truncated_file_is_refused(store, cut):
    blob = store.put_bytes(MULTI_CHUNK)
    path = blob_path(store, blob.sha256)
    raw = path.read_bytes()
    offset = body_offset(path)
    keep = {
        "last-chunk": offset + 2 * (CHUNK_SIZE + TAG_SIZE),  # ends cleanly on a chunk boundary
        "mid-chunk": offset + CHUNK_SIZE // 2,
        "header-only": offset,
        "empty-file": 0,
    }[cut]
    path.write_bytes(raw[:keep])
    with pytest.raises(IntegrityFailure):
        store.verify(blob.sha256)


def test_swapped_chunks_and_appended_bytes_are_refused(store):
    blob = store.put_bytes(MULTI_CHUNK)
    path = blob_path(store, blob.sha256)
    raw = path.read_bytes()
    offset, record = body_offset(path), CHUNK_SIZE + TAG_SIZE
    first, second = raw[offset:offset + record], raw[offset + record:offset + 2 * record]
    path.write_bytes(raw[:offset] + second + first + raw[offset + 2 * record:])
    with pytest.raises(IntegrityFailure):
        store.verify(blob.sha256)
    path.write_bytes(raw + raw[offset:offset + TAG_SIZE])
    with pytest.raises(IntegrityFailure):
        store.verify(blob.sha256)


def test_a_valid_blob_copied_over_another_address_is_refused(store):
    genuine = store.put_bytes(b"the real model")
    impostor = store.put_bytes(b"something else entirely")
    blob_path(store, genuine.sha256).write_bytes(blob_path(store, impostor.sha256).read_bytes())
    with pytest.raises(IntegrityFailure):
        store.read_bytes(genuine.sha256)


def test_uploading_the_same_bytes_again_repairs_a_damaged_copy(store):
    blob = store.put_bytes(b"precious")
    path = blob_path(store, blob.sha256)
    path.write_bytes(path.read_bytes()[:-1])
    again = store.put_bytes(b"precious")
    assert again.created is True
    assert store.read_bytes(blob.sha256) == b"precious"


def test_artifacts_written_with_an_old_key_stay_readable_after_rotation(tmp_path):
    old = store_at(tmp_path, ("k1", K1)).put_bytes(b"written under k1")
    rotated = store_at(tmp_path, ("k2", K2), ("k1", K1))
    assert rotated.read_bytes(old.sha256) == b"written under k1"
    new = rotated.put_bytes(b"written under k2")
    assert new.key_id == "k2"
    assert b"k2" in blob_path(rotated, new.sha256).read_bytes()[:16]
    # The same bytes again deduplicate onto the old copy, which is still valid.
    assert rotated.put_bytes(b"written under k1") == StoredBlob(old.sha256, old.size, "k1", created=False)


def test_an_artifact_whose_key_was_removed_gives_a_clear_error(tmp_path):
    old = store_at(tmp_path, ("k1", K1)).put_bytes(b"written under k1")
    only_new = store_at(tmp_path, ("k2", K2))
    with pytest.raises(ArtifactKeyMissing, match="key 'k1', which is not in MODELYARD_ARTIFACT_KEYS"):
        only_new.read_bytes(old.sha256)


def test_a_wrong_key_under_the_same_id_is_an_integrity_failure(tmp_path):
    blob = store_at(tmp_path, ("k1", K1)).put_bytes(b"model")
    with pytest.raises(IntegrityFailure):
        store_at(tmp_path, ("k1", K2)).read_bytes(blob.sha256)


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing_behind(tmp_path):
    store = store_at(tmp_path, ("k1", K1), max_bytes=CHUNK_SIZE + 10)
    with pytest.raises(PayloadTooLarge):
        store.put_stream(io.BytesIO(MULTI_CHUNK))
    with pytest.raises(PayloadTooLarge):
        store.put_stream(io.BytesIO(b"123456"), max_bytes=5)
    assert stored_files(tmp_path) == []
    assert store.put_stream(io.BytesIO(b"12345"), max_bytes=5).size == 5


@pytest.mark.parametrize("bad", ["../etc/passwd", "../../" + "a" * 58, "A" * 64, "a" * 63, "a" * 65, "",
                                 "g" * 64, "a" * 62 + "/x", None])
def test_a_malformed_address_is_simply_not_found(store, bad):
    store.put_bytes(b"anything")
    with pytest.raises(NotFound):
        store.verify(bad)
    with pytest.raises(NotFound):
        store.read_bytes(bad)
    assert store.exists(bad) is False


def test_an_unknown_address_is_not_found(store):
    with pytest.raises(NotFound, match="not found"):
        store.read_bytes(hashlib.sha256(b"never stored").hexdigest())


def test_without_keys_the_store_tells_the_operator_what_to_set(tmp_path):
    settings = load_settings({"artifact_root": str(tmp_path), "artifact_keys": ""}, environ={})
    store = ArtifactStore.from_settings(settings)
    with pytest.raises(ConfigError, match="MODELYARD_ARTIFACT_KEYS"):
        store.put_bytes(b"model")


@pytest.mark.parametrize("spec", ["k1", "k1:not base64!", "k1:" + base64.b64encode(b"short").decode(),
                                  "bad id:" + base64.b64encode(K1).decode(),
                                  f"k1:{base64.b64encode(K1).decode()},k1:{base64.b64encode(K2).decode()}"],
                         ids=["no key", "not base64", "short", "bad id", "one id twice"])
def test_malformed_keys_are_refused_at_startup(spec):
    with pytest.raises(ConfigError, match="MODELYARD_ARTIFACT_KEYS"):
        parse_keys(spec)


def test_keys_are_accepted_in_standard_and_url_safe_base64(tmp_path):
    key = bytes(range(250, 256)) + bytes(26)  # encodes with '+'/'/' or '-'/'_'
    standard, urlsafe = base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode().rstrip("=")
    assert parse_keys(f"a:{standard},b:{urlsafe}") == {"a": key, "b": key}


def test_partial_uploads_left_by_a_dead_process_are_purged_once_stale(store):
    store.put_bytes(b"kept")
    store.staging_dir.mkdir(exist_ok=True)
    stale, live = store.staging_dir / "dead.part", store.staging_dir / "live.part"
    stale.write_bytes(b"half an upload")
    live.write_bytes(b"an upload in progress")
    day_ago = os.stat(stale).st_mtime - 86_400
    os.utime(stale, (day_ago, day_ago))
    assert store.purge_staging(older_than=3600) == 1
    assert not stale.exists() and live.exists()
    assert store.read_bytes(hashlib.sha256(b"kept").hexdigest()) == b"kept"
