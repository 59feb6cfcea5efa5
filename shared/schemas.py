"""Marshmallow building blocks every service's HTTP schemas share."""

from __future__ import annotations

from datetime import timezone

from marshmallow import RAISE, Schema, fields


class StrictSchema(Schema):
    """Rejects fields it does not know, so a typo is a 422 instead of silently ignored."""

    class Meta:
        unknown = RAISE


class UtcDateTime(fields.DateTime):
    """ISO 8601 with its UTC offset even where the database hands back naive times (SQLite)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)
