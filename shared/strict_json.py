"""JSON from clients, held to what every store can keep.

Python's json accepts more than RFC 8259 and more than Postgres stores: `NaN`, `Infinity` and
numbers like `1e999` (which become inf), NUL characters (which neither `text` nor `jsonb` can hold),
and nesting deep enough to exhaust the recursion limit. Each would fail later as a 500 or be saved
as something no other JSON reader accepts, so they are refused while parsing: a malformed body.
The app's JSON provider parses request bodies with this, and so do form fields that carry JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider

# Far deeper than any real hyperparameters or metadata, and far from the interpreter's recursion limit.
MAX_DEPTH = 64


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def check_storable(value: Any) -> None:
    """Raise ValueError for a NUL character in any string or key, or nesting past MAX_DEPTH."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("a string contains a NUL character (\\u0000), which cannot be stored")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def loads(text: str | bytes) -> Any:
    """Parse client JSON strictly; ValueError (with a reason a client can act on) if it is refused."""
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels") from None
    check_storable(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that request bodies are read with `loads` above."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
