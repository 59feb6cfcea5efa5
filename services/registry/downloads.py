"""Downloads of stored blobs (version artifacts, dataset CSVs): streamed, with the sha256 as ETag, and
a Content-Disposition that names the file whatever characters its name has."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from flask import Response, request

from shared.artifacts import ArtifactStore

# Path separators, quotes and control characters have no place in the name of a saved file.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\"]')
# RFC 5987 attr-char, besides letters and digits: what a filename* value may hold unencoded.
_ATTR_CHARS = "!#$&+-.^_`|~"


def filename_parameters(filename: str) -> dict[str, str]:
    """Content-Disposition parameters for `filename`: an ASCII `filename` for every client, and when the
    name is not ASCII also `filename*` (RFC 6266, RFC 5987) with the name itself, which browsers prefer."""
    filename = _UNSAFE.sub("_", filename)
    decomposed = unicodedata.normalize("NFKD", filename)  # é -> e + a combining accent, which is dropped
    fallback = "".join(c if c.isascii() else "_" for c in decomposed if not unicodedata.combining(c))
    if fallback == filename:
        return {"filename": filename}
    return {"filename": fallback, "filename*": "UTF-8''" + quote(filename, safe=_ATTR_CHARS)}


def send_blob(*, artifacts: ArtifactStore, sha256: str, size: int, filename: str, mimetype: str) -> Response:
    """The blob as an attachment named `filename`; If-None-Match with its sha256 answers 304 unread."""
    if sha256 in request.if_none_match:
        response = Response(status=304)
    else:
        # Verified whole before this returns: a tampered blob raises here, before any byte is sent.
        response = Response(artifacts.iter_bytes(sha256), mimetype=mimetype, direct_passthrough=True)
        response.content_length = size
        response.headers.set("Content-Disposition", "attachment", **filename_parameters(filename))
    response.set_etag(sha256)
    return response
