"""The artifact store: content-addressed, encrypted blobs on the local filesystem.

A blob's address is the sha256 of its plaintext; its path is derived from that validated hex
digest alone, so no caller-supplied string ever reaches the filesystem. Every file is encrypted
with AES-256-GCM in fixed-size chunks (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015):

    header  = MAGIC | version (1 byte) | key id length (1) | key id | chunk size (4, BE) | nonce prefix (8)
    chunk i = AES-GCM(key, nonce = prefix | i (4, BE), plaintext_i, aad = header | i (8, BE) | final (1))

Binding the header, the chunk index and a final flag into every chunk's authentication means a
flipped bit, swapped or reordered chunks, truncation and appended bytes all fail to decrypt. The key
id in the header lets keys rotate: the first configured key writes, every configured key reads.
On top of that the plaintext's sha256 is recomputed on every read and must equal the address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import secrets
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import ConfigError, Settings
from shared.errors import IntegrityFailure, NotFound, PayloadTooLarge

MAGIC = b"MYAF"
FORMAT_VERSION = 1
CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 8
# A tampered header must not make a reader allocate gigabytes before authentication fails.
MAX_CHUNK_SIZE = 16 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FIXED_HEADER = struct.Struct(">4sBB")
_CHUNK_FIELDS = struct.Struct(">I8s")
_KEYS_HINT = (
    "set MODELYARD_ARTIFACT_KEYS to 'kid:<base64 of 32 random bytes>', e.g. "
    "k1:$(python -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
)


class ArtifactKeyMissing(IntegrityFailure):
    """The blob was written with a key that is no longer configured, so it cannot be read."""

    title, slug = "Artifact key not configured", "artifact-key-missing"


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    key_id: str
    created: bool  # False when the same bytes were already stored (deduplicated)


def parse_keys(spec: str) -> dict[str, bytes]:
    """`"kid:base64key,kid2:base64key"` -> ordered {kid: 32-byte key}; the first is the current key."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kid, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.fullmatch(kid):
            raise ConfigError(f"MODELYARD_ARTIFACT_KEYS: {kid!r} is not 'kid:base64key' with a kid of [A-Za-z0-9_.-]")
        if kid in keys:
            raise ConfigError(f"MODELYARD_ARTIFACT_KEYS: key id {kid!r} appears twice")
        # Accept both the standard and the URL-safe alphabet, padded or not.
        normalised = encoded.strip().replace("-", "+").replace("_", "/")
        try:
            key = base64.b64decode(normalised + "=" * (-len(normalised) % 4), validate=True)
        except binascii.Error as exc:
            raise ConfigError(f"MODELYARD_ARTIFACT_KEYS: key {kid!r} is not valid base64") from exc
        if len(key) != 32:
            raise ConfigError(f"MODELYARD_ARTIFACT_KEYS: key {kid!r} must be 32 bytes (AES-256), not {len(key)}")
        keys[kid] = key
    return keys


def _header(key_id: str, chunk_size: int, nonce_prefix: bytes) -> bytes:
    kid = key_id.encode()
    return _FIXED_HEADER.pack(MAGIC, FORMAT_VERSION, len(kid)) + kid + _CHUNK_FIELDS.pack(chunk_size, nonce_prefix)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, final)


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read exactly `size` bytes unless the stream ends first (sockets and pipes return short reads)."""
    parts, remaining = [], size
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


class _Decryptor:
    """Reads one open blob file: parses its header and yields authenticated plaintext chunks."""

    def __init__(self, file: BinaryIO, sha256: str, ciphers: dict[str, AESGCM]):
        self.file, self.sha256 = file, sha256
        fixed = file.read(_FIXED_HEADER.size)
        if len(fixed) != _FIXED_HEADER.size:
            raise self._broken()
        magic, version, kid_len = _FIXED_HEADER.unpack(fixed)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise self._broken()
        kid_bytes = file.read(kid_len)
        rest = file.read(_CHUNK_FIELDS.size)
        if len(kid_bytes) != kid_len or len(rest) != _CHUNK_FIELDS.size:
            raise self._broken()
        self.chunk_size, self.prefix = _CHUNK_FIELDS.unpack(rest)
        if not 0 < self.chunk_size <= MAX_CHUNK_SIZE:
            raise self._broken()
        self.key_id = kid_bytes.decode(errors="replace")
        if self.key_id not in ciphers:
            raise ArtifactKeyMissing(
                f"artifact {sha256} is encrypted with key {self.key_id!r}, which is not in MODELYARD_ARTIFACT_KEYS; "
                "add that key back (after the current one) to read it"
            )
        self.cipher = ciphers[self.key_id]
        self.header = fixed + kid_bytes + rest
        self.body_offset = len(self.header)

    def _broken(self) -> IntegrityFailure:
        return IntegrityFailure(f"artifact {self.sha256} failed its integrity check")

    def chunks(self) -> Iterator[bytes]:
        """Plaintext chunks from the start of the body; each is authenticated before it is returned."""
        self.file.seek(self.body_offset)
        record = self.chunk_size + TAG_SIZE
        current = self.file.read(record)
        index = 0
        while True:
            # The last record is the one followed by nothing; it must carry the final flag.
            following = self.file.read(record) if len(current) == record else b""
            final = not following
            if len(current) < TAG_SIZE:
                raise self._broken()
            try:
                yield self.cipher.decrypt(_nonce(self.prefix, index), current, _aad(self.header, index, final))
            except InvalidTag as exc:
                raise self._broken() from exc
            if final:
                return
            current, index = following, index + 1

    def record(self, index: int, count: int) -> bytes:
        """The plaintext of chunk `index` of `count`, authenticated on its own (index and final flag included)."""
        record = self.chunk_size + TAG_SIZE
        self.file.seek(self.body_offset + index * record)
        try:
            return self.cipher.decrypt(_nonce(self.prefix, index), self.file.read(record),
                                       _aad(self.header, index, index == count - 1))
        except InvalidTag as exc:
            raise self._broken() from exc

    def verify(self) -> int:
        """Decrypt everything, check the plaintext's sha256 against the address; return its size."""
        digest, size = hashlib.sha256(), 0
        for chunk in self.chunks():
            digest.update(chunk)
            size += len(chunk)
        if digest.hexdigest() != self.sha256:
            raise self._broken()
        return size


class _PlaintextStream:
    """An already verified blob's plaintext, streamed; closes its file when exhausted or closed.

    A class rather than a generator so that `close()` (which WSGI servers call) releases the file
    even when the response is abandoned before its first chunk.
    """

    def __init__(self, decryptor: _Decryptor, chunk_size: int):
        self._decryptor = decryptor
        chunks = decryptor.chunks()
        self._chunks = chunks if chunk_size == decryptor.chunk_size else _rechunk(chunks, chunk_size)

    def __iter__(self) -> "_PlaintextStream":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._chunks.close()
        self._decryptor.file.close()


class _SeekablePlaintext(io.RawIOBase):
    """A blob's plaintext as a read-only, seekable file, decrypting only the chunks that are read: what
    a zip reader needs to look at an archive's directory and one member without the rest of it."""

    def __init__(self, decryptor: _Decryptor):
        self._decryptor = decryptor
        record = decryptor.chunk_size + TAG_SIZE
        body = os.fstat(decryptor.file.fileno()).st_size - decryptor.body_offset
        self._count = max(1, -(-body // record))  # an empty blob is one record holding only its tag
        self._size = body - self._count * TAG_SIZE
        self._position, self._cached = 0, (-1, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer) -> int:
        if self._position >= self._size:
            return 0
        index, offset = divmod(self._position, self._decryptor.chunk_size)
        if self._cached[0] != index:
            self._cached = (index, self._decryptor.record(index, self._count))
        piece = self._cached[1][offset:offset + len(buffer)]
        buffer[:len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def close(self) -> None:
        self._decryptor.file.close()
        super().close()


def _rechunk(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class ArtifactStore:
    """Encrypted, content-addressed blobs under `root`; see the module docstring for the format."""

    def __init__(self, root: str | os.PathLike, keys: dict[str, bytes], *, max_bytes: int | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = next(iter(keys), None)

    @classmethod
    def from_settings(cls, settings: Settings) -> "ArtifactStore":
        """The store the settings describe. Empty keys are allowed here and refused on first use."""
        return cls(settings.artifact_root, parse_keys(settings.artifact_keys), max_bytes=settings.max_upload_bytes)

    def _require_keys(self) -> None:
        if self._current is None:
            raise ConfigError(f"no artifact encryption key is configured: {_KEYS_HINT}")

    def _path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise NotFound(f"artifact {sha256!r} not found")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored at this address (without checking it)."""
        try:
            return self._path(sha256).is_file()
        except NotFound:
            return False

    def put_bytes(self, data: bytes) -> StoredBlob:
        """Store bytes the platform produced itself (no upload limit applies)."""
        return self._write(io.BytesIO(data), limit=None)

    def put_stream(self, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredBlob:
        """Store an upload chunk by chunk; past `max_bytes` (default: the upload limit) raise PayloadTooLarge."""
        return self._write(stream, limit=self.max_bytes if max_bytes is None else max_bytes)

    @property
    def staging_dir(self) -> Path:
        return self.root / ".staging"

    def purge_staging(self, *, older_than: float) -> int:
        """Delete partial uploads untouched for `older_than` seconds (a process killed mid-write leaves
        them; a live upload writes every chunk, so it is never that old). Returns how many went."""
        cutoff = time.time() - older_than
        purged = 0
        for part in self.staging_dir.glob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    purged += 1
            except FileNotFoundError:  # finished (renamed) or purged by another worker meanwhile
                continue
        return purged

    def _write(self, stream: BinaryIO, *, limit: int | None) -> StoredBlob:
        self._require_keys()
        staging = self.staging_dir
        staging.mkdir(parents=True, exist_ok=True)
        # Same directory tree as the final path, so os.replace is an atomic rename on one filesystem.
        fd, tmp_name = tempfile.mkstemp(dir=staging, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, size = self._encrypt(stream, out, limit)
                out.flush()
                os.fsync(out.fileno())
            target = self._path(sha256)
            if self._intact_copy_exists(sha256):
                tmp.unlink()
                return StoredBlob(sha256=sha256, size=size, key_id=self._key_id_of(target), created=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Two concurrent puts of the same bytes each rename a complete, valid file: last one wins.
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            return StoredBlob(sha256=sha256, size=size, key_id=self._current, created=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _encrypt(self, stream: BinaryIO, out: BinaryIO, limit: int | None) -> tuple[str, int]:
        """Write header and chunks for `stream` to `out`; return the plaintext's sha256 and size."""
        prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
        header = _header(self._current, CHUNK_SIZE, prefix)
        cipher = self._ciphers[self._current]
        out.write(header)
        digest, size, index = hashlib.sha256(), 0, 0
        current = _read_full(stream, CHUNK_SIZE)
        while True:
            size += len(current)
            if limit is not None and size > limit:
                raise PayloadTooLarge(f"the upload is larger than the {limit}-byte limit")
            digest.update(current)
            # Read one chunk ahead: only then is it known whether this chunk is the final one.
            following = _read_full(stream, CHUNK_SIZE) if len(current) == CHUNK_SIZE else b""
            final = not following
            out.write(cipher.encrypt(_nonce(prefix, index), current, _aad(header, index, final)))
            if final:
                return digest.hexdigest(), size
            current, index = following, index + 1

    def _intact_copy_exists(self, sha256: str) -> bool:
        """Deduplicate only onto a copy that still verifies; a damaged one is replaced by the new upload."""
        if not self.exists(sha256):
            return False
        try:
            self.verify(sha256)
        except (IntegrityFailure, NotFound):
            return False
        return True

    def _key_id_of(self, path: Path) -> str:
        with path.open("rb") as file:
            return _Decryptor(file, path.name, self._ciphers).key_id

    def _open(self, sha256: str) -> _Decryptor:
        path = self._path(sha256)
        self._require_keys()
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found") from None
        try:
            return _Decryptor(file, sha256, self._ciphers)
        except BaseException:
            file.close()
            raise

    def verify(self, sha256: str) -> None:
        """Raise IntegrityFailure unless the blob decrypts, authenticates and hashes to its address."""
        decryptor = self._open(sha256)
        with decryptor.file:
            decryptor.verify()

    def iter_bytes(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The plaintext in pieces of `chunk_size` bytes. The whole blob is verified before this
        returns, so a tampered blob raises here (before any response starts) and is never yielded."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        decryptor = self._open(sha256)
        try:
            decryptor.verify()
        except BaseException:
            decryptor.file.close()
            raise
        # The same open file is read again: a rename over the path in between cannot swap blobs,
        # and every chunk is re-authenticated, so in-place tampering still stops the stream.
        return _PlaintextStream(decryptor, chunk_size)

    def open_plaintext(self, sha256: str) -> BinaryIO:
        """The plaintext as a seekable file that decrypts and authenticates each chunk as it is read (so a
        tampered chunk raises IntegrityFailure when reached); close it after use."""
        return io.BufferedReader(_SeekablePlaintext(self._open(sha256)), buffer_size=CHUNK_SIZE)

    def discard(self, sha256: str) -> None:
        """Delete a blob this caller just stored and then refused, so refused bytes are not kept."""
        self._path(sha256).unlink(missing_ok=True)

    def read_bytes(self, sha256: str) -> bytes:
        """The whole plaintext in memory; for small blobs only."""
        return b"".join(self.iter_bytes(sha256))


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
