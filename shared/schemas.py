"""Marshmallow building blocks every service's HTTP schemas share."""

from __future__ import annotations

import unicodedata
from datetime import timezone

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load

from shared.errors import ValidationFailed

CREATOR_FROM_CREDENTIALS = ("created_by cannot be given: the creator is taken from the credentials of the request "
                            "that creates it (the authenticated user or API key); leave the field out.")


class StrictSchema(Schema):
    """Rejects fields it does not know, so a typo is a 422 instead of silently ignored."""

    class Meta:
        unknown = RAISE


class CreatedByCaller(StrictSchema):
    """A create whose creator is the caller. The brief sends created_by: refused with the reason as the answer's
    detail, not only as a field message (a ValidationError's detail merely lists the fields)."""

    @pre_load
    def _creator_is_the_caller(self, data, **kwargs):
        if isinstance(data, dict) and "created_by" in data:
            raise ValidationFailed(CREATOR_FROM_CREDENTIALS, errors={"created_by": [CREATOR_FROM_CREDENTIALS]})
        return data


# Characters that make one name look like another, or hide part of it: bidirectional overrides, isolates
# and marks (which reorder what is shown), zero-width characters (invisible), and line and paragraph
# separators; control characters (CR, LF, NUL ...) are refused by their Unicode category.
_BIDI = frozenset(map(chr, (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)))
_INVISIBLE = frozenset(map(chr, (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)))
_SEPARATORS = frozenset(map(chr, (0x2028, 0x2029)))


def normalise_name(text: str) -> str:
    """A name as it is stored and compared: NFC, so "café" typed with a combining accent is the same name."""
    return unicodedata.normalize("NFC", text)


def name_problem(text: str) -> str | None:
    """Why `text` cannot be a name, or None."""
    for char in text:
        if char in _BIDI:
            return f"Must not contain bidirectional control characters (U+{ord(char):04X})."
        if char in _INVISIBLE:
            return f"Must not contain zero-width characters (U+{ord(char):04X})."
        if char in _SEPARATORS or unicodedata.category(char) == "Cc":
            return f"Must not contain control characters (U+{ord(char):04X})."
    return None


class Name(fields.String):
    """A name people read and compare (a model's, a user's, a dataset's, an API key's): NFC-normalised,
    and without characters that hide or reorder text, so two names that look the same are the same."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = name_problem(text)
        if problem:
            raise ValidationError(problem)
        return normalise_name(text)


class UtcDateTime(fields.DateTime):
    """ISO 8601 with its UTC offset even where the database hands back naive times (SQLite)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)
