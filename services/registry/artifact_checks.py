"""What the registry checks before an artifact becomes a version, and the format it records.

Looked at, never loaded: the bytes tell a pickle (or joblib's compressed pickle, or a zip holding one)
whatever the file is called, read as far as they keep parsing as one; a file that says it is skops (its name, or the `format` the uploader gives) must be a
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
from shared.model_files import ZIP_MAGIC, UntrustedArtifact, pickle_format, untrusted_types, zip_holds_pickle

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


def _stored_size(artifacts: ArtifactStore, sha256: str, field: str) -> int:
    if not artifacts.exists(sha256):
        raise ValidationFailed(f"No stored artifact has sha256 {sha256}.", errors={field: ["No such artifact."]})
    # Reading it through also proves it intact: a version is never registered on a tampered blob.
    return sum(len(chunk) for chunk in artifacts.iter_bytes(sha256))


def _empty(field: str) -> ValidationFailed:
    return ValidationFailed("The artifact is empty.", errors={field: ["Must not be empty."]})


def _refuse_pickle(pickled: str | None, field: str, allow_pickle: bool) -> None:
    if pickled and not allow_pickle:
        raise UnsupportedMediaType(
            f"The artifact is a {pickled} file, which runs code when it is loaded; save the model with skops "
            "(or export it to ONNX) instead.",
            errors={field: [f"{pickled} content is not accepted."]})


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


def _classify(artifacts: ArtifactStore, sha256: str, size: int, field: str, allow_pickle: bool,
              filename: str | None, declared_format: str | None) -> CheckedArtifact:
    # Read from the stored plaintext, as far as the bytes keep parsing as pickle: a payload padded past
    # any fixed head is still found. A pickle is refused whatever the file calls itself.
    with artifacts.open_plaintext(sha256) as plaintext:
        pickled = pickle_format(plaintext)
        is_zip = not pickled and plaintext.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    _refuse_pickle(pickled, field, allow_pickle)
    if pickled:
        return CheckedArtifact(sha256, size, pickled, loadable=False)
    suffix = PurePath(filename or "").suffix.lower()
    if declared_format == "skops" or suffix == ".skops":
        _check_skops(artifacts, sha256, field)
        return CheckedArtifact(sha256, size, "skops", loadable=True)
    if is_zip:
        try:
            _check_skops(artifacts, sha256, field)
            return CheckedArtifact(sha256, size, "skops", loadable=True)
        except ValidationFailed:
            pass  # it never said it was skops; a zip holding a pickle (PyTorch's .pt) is a pickle
        with artifacts.open_plaintext(sha256) as plaintext:
            if zip_holds_pickle(plaintext):
                _refuse_pickle("pickle", field, allow_pickle)
                return CheckedArtifact(sha256, size, "pickle", loadable=False)
    is_onnx = declared_format == "onnx" or suffix == ".onnx"
    return CheckedArtifact(sha256, size, "onnx" if is_onnx else "opaque", loadable=False)


def check_and_store(*, artifacts: ArtifactStore, allow_pickle: bool, filename: str | None, declared_format: str | None,
                    stream: BinaryIO | None = None, sha256: str | None = None) -> CheckedArtifact:
    """Store an upload (`stream`) or look at a stored blob (`sha256`), refusing an empty artifact (422),
    pickle or joblib content (415 unless `allow_pickle`) and a skops claim that fails the trusted list
    (422); a refused upload's bytes are not kept. Returns the format and loadability to record."""
    field = "artifact" if stream is not None else "artifact_id"
    if stream is None:
        size = _stored_size(artifacts, sha256, field)
        if not size:
            raise _empty(field)
        return _classify(artifacts, sha256, size, field, allow_pickle, filename, declared_format)
    first = stream.read(1)
    if not first:
        raise _empty(field)
    blob: StoredBlob = artifacts.put_stream(_HeadThenRest(first, stream))
    try:
        return _classify(artifacts, blob.sha256, blob.size, field, allow_pickle, filename, declared_format)
    except (ValidationFailed, UnsupportedMediaType):
        if blob.created:  # the same bytes stored before are someone else's
            artifacts.discard(blob.sha256)
        raise
