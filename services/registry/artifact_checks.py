"""What the registry checks before an artifact becomes a version, and the format it records.

Looked at, never loaded: the first bytes tell a pickle (or joblib's compressed pickle) whatever the
file is called; a file that says it is skops (its name, or the `format` the uploader gives) must be a
skops archive whose every type is on the platform's trusted list, read from the stored blob's zip
directory and schema, never extracted. A zip that says nothing but passes the same check is skops too
(the same bytes registered again by `artifact_id` have no name); anything else is kept as opaque bytes
the platform never loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import BinaryIO

from shared.artifacts import ArtifactStore, StoredBlob
from shared.errors import UnsupportedMediaType, ValidationFailed
from shared.model_files import HEAD_BYTES, UntrustedArtifact, pickle_format, untrusted_types

ZIP_MAGIC = b"PK\x03\x04"

# What a version's `format` can say. Only skops (checked against the trusted list) is `loadable`:
# ONNX is recognised by name and kept for tools that run it, pickle and joblib only under
# MODELYARD_ALLOW_PICKLE, and never loaded by the platform itself.
FORMATS = ("skops", "onnx", "pickle", "joblib", "opaque")


@dataclass(frozen=True)
class CheckedArtifact:
    sha256: str
    size: int
    format: str
    loadable: bool


class _HeadThenRest:
    """The bytes already read from an upload, then the rest of it: the store sees the whole stream once."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        piece = self._head if size < 0 else self._head[:size]
        self._head = self._head[len(piece):]
        return piece


def _read_head(stream: BinaryIO) -> bytes:
    parts, remaining = [], HEAD_BYTES
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _stored_head_and_size(artifacts: ArtifactStore, sha256: str, field: str) -> tuple[bytes, int]:
    if not artifacts.exists(sha256):
        raise ValidationFailed(f"No stored artifact has sha256 {sha256}.", errors={field: ["No such artifact."]})
    # Reading it through also proves it intact: a version is never registered on a tampered blob.
    head, size = b"", 0
    for chunk in artifacts.iter_bytes(sha256):
        if len(head) < HEAD_BYTES:
            head += chunk[:HEAD_BYTES - len(head)]
        size += len(chunk)
    return head, size


def _refuse_empty_or_pickle(head: bytes, field: str, allow_pickle: bool) -> str | None:
    """The pickle format the head shows (None: not a pickle); refusals before anything is stored."""
    if not head:
        raise ValidationFailed("The artifact is empty.", errors={field: ["Must not be empty."]})
    pickled = pickle_format(head)
    if pickled and not allow_pickle:
        raise UnsupportedMediaType(
            f"The artifact is a {pickled} file, which runs code when it is loaded; save the model with skops "
            "(or export it to ONNX) instead.",
            errors={field: [f"{pickled} content is not accepted."]})
    return pickled


def _check_skops(artifacts: ArtifactStore, sha256: str, field: str) -> None:
    with artifacts.open_plaintext(sha256) as archive:
        try:
            outside = untrusted_types(archive)
        except UntrustedArtifact as exc:
            raise ValidationFailed(f"The artifact says it is skops but is {exc}.",
                                   errors={field: ["Not a valid skops file."]}) from None
    if outside:
        raise ValidationFailed("The skops file contains types the platform does not load: " + ", ".join(outside),
                               errors={field: [f"Untrusted type: {name}" for name in outside]})


def check_and_store(*, artifacts: ArtifactStore, allow_pickle: bool, filename: str | None, declared_format: str | None,
                    stream: BinaryIO | None = None, sha256: str | None = None) -> CheckedArtifact:
    """Store an upload (`stream`) or look at a stored blob (`sha256`), refusing an empty artifact (422),
    pickle or joblib content (415 unless `allow_pickle`) and a skops claim that fails the trusted list
    (422, the refused upload's bytes not kept); the format and loadability to record."""
    field = "artifact" if stream is not None else "artifact_id"
    if stream is not None:
        head = _read_head(stream)
        pickled = _refuse_empty_or_pickle(head, field, allow_pickle)
        blob: StoredBlob | None = artifacts.put_stream(_HeadThenRest(head, stream))
        sha256, size = blob.sha256, blob.size
    else:
        blob = None
        head, size = _stored_head_and_size(artifacts, sha256, field)
        pickled = _refuse_empty_or_pickle(head, field, allow_pickle)
    suffix = PurePath(filename or "").suffix.lower()
    if declared_format == "skops" or suffix == ".skops":
        try:
            _check_skops(artifacts, sha256, field)
        except ValidationFailed:
            if blob is not None and blob.created:  # same bytes stored before are someone else's
                artifacts.discard(sha256)
            raise
        return CheckedArtifact(sha256, size, "skops", loadable=True)
    if pickled:
        return CheckedArtifact(sha256, size, pickled, loadable=False)
    if head.startswith(ZIP_MAGIC):
        try:
            _check_skops(artifacts, sha256, field)
            return CheckedArtifact(sha256, size, "skops", loadable=True)
        except ValidationFailed:
            pass  # it never said it was skops: kept, as any other zip, opaque
    is_onnx = declared_format == "onnx" or suffix == ".onnx"
    return CheckedArtifact(sha256, size, "onnx" if is_onnx else "opaque", loadable=False)
