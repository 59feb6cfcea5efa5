"""JSON from clients, held to what every store can keep.

Python's json accepts more than RFC 8259 and more than Postgres stores: `NaN`, `Infinity` and
numbers like `1e999` (which become inf), NUL characters (which neither `text` nor `jsonb` can hold),
and nesting deep enough to exhaust the recursion limit. Each would fail later as a 500 or be saved
as something no other JSON reader accepts, so they are refused while parsing: a malformed body.
The app's JSON provider parses request bodies with this, and so do form fields that carry JSON.

orjson parses (a 1,000-row prediction's body in a tenth of the time Python's json takes with the
checks above); it refuses NaN, Infinity and 1e999 itself. Python's json still reads the bodies orjson
would read differently: one with an integer of 19 digits or more (orjson makes those past 64 bits
floats; Python keeps them exact) or a `\\u0000` to be found, and it gives the reason for any refusal.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

# Far deeper than any real hyperparameters or metadata, and far from the interpreter's recursion limit.
MAX_DEPTH = 64
# An integer orjson would not keep exact: 19 digits or more, not a fraction's (orjson reads
# "0.00012340283920019338" as Python does). Runs of 19 digits are found as one substring once all digits
# read alike; only those are looked at (a regular expression over every digit cost more than orjson's parse).
_ALL_DIGITS_ALIKE = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_RUN = b"0" * 19
_CONTAINERS = (dict, list)


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


def _check_depth(value: Any) -> None:
    """Raise ValueError for nesting past MAX_DEPTH (orjson's own limit is 1,024)."""
    # A level at a time: its children gathered at C speed, the containers among them kept (half the
    # time of a stack of (value, depth) pairs on a 1,000-record batch).
    level, depth = [value], 1
    while level:
        if depth > MAX_DEPTH:
            raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
        children: list[Any] = []
        for item in level:
            children.extend(item.values() if type(item) is dict else item)
        level = [child for child in children if type(child) in _CONTAINERS]
        depth += 1


def _python_loads(text: str | bytes) -> Any:
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels") from None
    check_storable(value)
    return value


def _has_long_integer(data: bytes) -> bool:
    digits = data.translate(_ALL_DIGITS_ALIKE)
    start = digits.find(_LONG_RUN)
    while start >= 0:  # the first digit of a run of 19 or more (runs before it were passed over)
        end = start + len(_LONG_RUN)
        while end < len(digits) and digits[end] == 48:  # b"0"
            end += 1
        if (start == 0 or data[start - 1] != 46) and (end == len(data) or data[end] not in b".eE"):  # b"."
            return True
        start = digits.find(_LONG_RUN, end)
    return False


def plain_loads(data: bytes) -> Any:
    """JSON as Python's json reads it, without the checks above: by orjson wherever it reads the same,
    by Python's json where it would not (an integer past 64 bits; what orjson refuses and Python's json
    reads: NaN, 1e999, a lone surrogate). For messages between the platform's own processes."""
    if not _has_long_integer(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def loads(text: str | bytes) -> Any:
    """Parse client JSON strictly; ValueError (with a reason a client can act on) if it is refused."""
    data = text.encode() if isinstance(text, str) else text
    if b"\\u0000" in data or _has_long_integer(data):
        return _python_loads(data)  # a NUL to refuse, or an integer to keep exact
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        _python_loads(data)  # its reason, where it has one
        raise ValueError(str(exc)) from None  # what only orjson refuses: a lone surrogate, say
    # Without enough brackets to nest that deep (most bodies), the walk is not needed.
    if type(value) in _CONTAINERS and data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        _check_depth(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that request bodies are read with `loads` above."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
