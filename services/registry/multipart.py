"""A blueprint whose views can declare one multipart body (form fields and files together).

webargs reads form fields and files as two locations, and flask-smorest documents only one request
body per view; the `multipart` location reads both at once, so an upload is one schema that both
validates (unknown parts are refused like unknown JSON fields) and documents the request.
"""

from __future__ import annotations

import re

import flask_smorest
from werkzeug.datastructures import CombinedMultiDict

from shared.errors import ValidationFailed
from shared import web
from shared.web import MULTIPART

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class MultipartParser(web.Parser):
    __location_map__ = dict(multipart="load_multipart", **web.Parser.__location_map__)

    def load_multipart(self, req, schema):
        """Form fields and uploaded files of a multipart/form-data request, as one mapping."""
        # Field values and file names end up in text columns, which cannot hold a NUL character.
        filenames = ((name, upload.filename or "") for name, upload in req.files.items(multi=True))
        for name, text in (*req.form.items(multi=True), *filenames):
            if "\x00" in name or "\x00" in text:
                raise ValidationFailed(f"The form part {name!r} contains a NUL character.",
                                       errors={name: ["Must not contain NUL characters."]})
        # A file name becomes a dataset's name and a download's Content-Disposition header, where a
        # line break would start a new header. (Sent raw, CR/LF break the part's own header instead,
        # and the part arrives as a plain field, which the schema's FilePart refuses.)
        for name, upload in req.files.items(multi=True):
            if CONTROL_CHARACTERS.search(upload.filename or ""):
                raise ValidationFailed(f"The file name of form part {name!r} contains a control character.",
                                       errors={name: ["The file name must not contain control characters "
                                                      "(line breaks, tabs)."]})
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class Blueprint(web.Blueprint):
    ARGUMENTS_PARSER = MultipartParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING, "multipart": MULTIPART,
    }
