"""A column's values over many rows read as one text: the database joins them (string_agg; SQLite's
group_concat) as a JSON array's items, and orjson parses them at once. The driver's work per row and
per value was a third of a drift report's time (drift._window) and most of tallying an hour from its
rows (rollups._tallied).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa


def joined(column: sa.ColumnElement) -> sa.FunctionElement:
    """`column`'s values (JSON, or numbers: SQLite writes a float to 15 digits) over a group's rows as one
    text, "null" for a NULL. A query's aggregates read its rows in one pass, so its joined columns list
    them in one order (or the rows their filters keep, in that order)."""
    return sa.func.aggregate_strings(sa.func.coalesce(sa.cast(column, sa.Text), "null"), ",")


def parsed(text: str | None) -> list[Any]:
    """The values a `joined` text holds; none for a group without rows (the aggregate's NULL)."""
    return orjson.loads("[" + (text or "") + "]")
