"""The one pagination scheme: keyset pagination on (sort column, unique tie-breaker).

A page is `{items, next_cursor}`. The cursor is opaque to clients: base64url JSON holding the sort
it was made for and the last row's sort value and tie-breaker. Keyset (not offset) pagination keeps
every page as cheap as the first and never skips or repeats a row when rows are added meanwhile.

A list view takes `ListArgs` (or a subclass adding its filters) from the query string, builds a
`select()` with its filters, and calls `paginate(...)` with the `Sorting` it allows.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import sqlalchemy as sa
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class ListArgs(Schema):
    """Query arguments every list takes; extend it with the list's filters."""

    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=2048))
    sort = fields.String(load_default=None, validate=validate.Length(max=64))


class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)


def page_schema(item_schema: type[Schema]) -> type[Schema]:
    """The response schema of a list: `{items: [item], next_cursor}`, named after the item."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return type(name, (PageSchema,), {"items": fields.List(fields.Nested(item_schema))})


@dataclass(frozen=True)
class Sorting:
    """The sort keys a list allows (public name -> mapped column) and its unique tie-breaker.

    `default` is a public name, optionally prefixed with `-` for descending order.
    """

    columns: Mapping[str, InstrumentedAttribute]
    tiebreaker: InstrumentedAttribute
    default: str

    def choices(self) -> list[str]:
        return sorted(self.columns) + sorted(f"-{name}" for name in self.columns)

    def resolve(self, sort: str | None) -> tuple[str, InstrumentedAttribute, bool]:
        """(canonical sort string, column, descending) for `?sort=`; 422 naming `sort` if unknown."""
        sort = sort or self.default
        descending = sort.startswith("-")
        name = sort[1:] if descending else sort
        if name not in self.columns:
            raise ValidationFailed(
                f"Cannot sort by {sort!r}.",
                errors={"sort": [f"Must be one of: {', '.join(self.choices())}."]},
            )
        return sort, self.columns[name], descending


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _decode_value(raw: Any, column: InstrumentedAttribute) -> Any:
    """Turn a cursor's JSON value back into the column's Python type; ValueError if it cannot."""
    column_type = column.property.columns[0].type
    if raw is None:
        raise ValueError("missing value")
    if isinstance(column_type, (sa.DateTime, sa.Uuid)) and not isinstance(raw, str):
        raise ValueError("not a string")
    if isinstance(column_type, sa.DateTime):
        return datetime.fromisoformat(raw)
    if isinstance(column_type, sa.Uuid):
        return uuid.UUID(raw)
    if isinstance(column_type, sa.Integer):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("not an integer")
        # A forged cursor must not reach the database with a number its column cannot compare against.
        bound = 2**63 if isinstance(column_type, sa.BigInteger) else 2**31
        if not -bound <= raw < bound:
            raise ValueError("out of range")
        return raw
    if isinstance(column_type, sa.String):
        if not isinstance(raw, str) or "\x00" in raw:
            raise ValueError("not a string")
        return raw
    return raw


def encode_cursor(sort: str, value: Any, tiebreak: Any) -> str:
    data = json.dumps({"s": sort, "v": _encode_value(value), "t": _encode_value(tiebreak)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def _bad_cursor(reason: str) -> ValidationFailed:
    return ValidationFailed(f"The cursor is not valid: {reason}.",
                            errors={"cursor": ["Pass back the next_cursor of a previous page unchanged."]})


def decode_cursor(cursor: str, sort: str, column: InstrumentedAttribute,
                  tiebreaker: InstrumentedAttribute) -> tuple[Any, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise _bad_cursor("it is not a cursor this API issued") from None
    if not isinstance(data, dict) or not {"s", "v", "t"} <= data.keys():
        raise _bad_cursor("it is not a cursor this API issued")
    if data["s"] != sort:
        raise _bad_cursor(f"it was made for sort {data['s']!r}, not {sort!r}")
    try:
        return _decode_value(data["v"], column), _decode_value(data["t"], tiebreaker)
    except (TypeError, ValueError):
        raise _bad_cursor("its position cannot be read") from None


def paginate(
    session: Session,
    statement: sa.Select,
    *,
    sorting: Sorting,
    limit: int,
    cursor: str | None = None,
    sort: str | None = None,
) -> Page:
    """One page of `statement` (a `select()` of one entity) in the requested order, after `cursor`.

    Sort columns must be NOT NULL: a row-value comparison with NULL matches nothing.
    """
    sort, column, descending = sorting.resolve(sort)
    tiebreaker = sorting.tiebreaker
    single_key = column is tiebreaker
    if cursor:
        value, tiebreak = decode_cursor(cursor, sort, column, tiebreaker)
        if single_key:
            statement = statement.where(column < value if descending else column > value)
        else:
            # A row-value comparison matches an index on (column, tie-breaker) directly.
            keys = sa.tuple_(column, tiebreaker)
            after = sa.tuple_(sa.literal(value, column.type), sa.literal(tiebreak, tiebreaker.type))
            statement = statement.where(keys < after if descending else keys > after)
    order = [column.desc() if descending else column.asc()]
    if not single_key:
        order.append(tiebreaker.desc() if descending else tiebreaker.asc())
    rows = list(session.scalars(statement.order_by(*order).limit(limit + 1)))
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], encode_cursor(sort, getattr(last, column.key), getattr(last, tiebreaker.key)))
