"""Schema inference for an uploaded CSV, in one streaming pass with the csv module (no pandas).

Per column: the narrowest dtype every non-null value fits (boolean, integer, float, datetime, else
string), the null count, for numbers min and max of the finite values and the count of infinite ones
(JSON has no infinity, and a profile is answered as JSON), and for columns with at most MAX_COUNTED_VALUES
distinct values the count of each (training checks class counts against its folds before queuing).
Memory stays constant in the number of rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from shared.csv_format import NULL_TOKENS, header_problem
from shared.errors import ValidationFailed

BOOLEANS = frozenset({"true", "false"})
INTEGER = re.compile(r"[+-]?\d+")
FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", re.IGNORECASE)
# Narrowest first: the first candidate still standing after every value names the column's dtype.
DTYPES = ("boolean", "integer", "float", "datetime", "string")
MAX_COUNTED_VALUES = 100


def _is_datetime(value: str) -> bool:
    # fromisoformat also takes compact forms like "20240101"; demand separators so numbers stay numbers.
    if len(value) < 8 or "-" not in value[:10]:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_CHECKS = {
    "boolean": lambda v: v.lower() in BOOLEANS,
    "integer": lambda v: INTEGER.fullmatch(v) is not None,
    "float": lambda v: FLOAT.fullmatch(v) is not None,
    "datetime": _is_datetime,
}


@dataclass
class _Column:
    name: str
    nulls: int = 0
    non_null: int = 0
    infinite: int = 0
    candidates: list[str] = field(default_factory=lambda: list(DTYPES[:-1]))
    low: float | None = None
    high: float | None = None
    # None once the column has more distinct values than are worth counting.
    counts: dict[str, int] | None = field(default_factory=dict)

    def observe(self, raw: str) -> None:
        value = raw.strip()
        if value.lower() in NULL_TOKENS:
            self.nulls += 1
            return
        self.non_null += 1
        if self.counts is not None:
            self.counts[value] = self.counts.get(value, 0) + 1
            if len(self.counts) > MAX_COUNTED_VALUES:
                self.counts = None
        if self.candidates:
            self.candidates = [dtype for dtype in self.candidates if _CHECKS[dtype](value)]
            if "float" in self.candidates:  # integers match the float pattern too
                number = float(value)
                if not math.isfinite(number):  # "inf", "-Infinity", or past float's range: "1e999"
                    self.infinite += 1
                    return
                self.low = number if self.low is None else min(self.low, number)
                self.high = number if self.high is None else max(self.high, number)

    def describe(self) -> dict[str, Any]:
        dtype = self.candidates[0] if self.candidates and self.non_null else "string"
        numeric = dtype in ("integer", "float")
        as_type = int if dtype == "integer" else float
        return {
            "name": self.name, "dtype": dtype, "nulls": self.nulls, "non_null": self.non_null,
            "infinite": self.infinite,
            "min": as_type(self.low) if numeric and self.low is not None else None,
            "max": as_type(self.high) if numeric and self.high is not None else None,
            "value_counts": self.counts,
        }


@dataclass(frozen=True)
class CsvProfile:
    sha256: str
    size: int
    rows: int
    columns: list[dict[str, Any]]


class _HashingReader(io.RawIOBase):
    """Passes bytes through while hashing and counting them, so one pass gives digest and schema."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        self.digest.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)


def _invalid(detail: str) -> ValidationFailed:
    return ValidationFailed(detail, errors={"file": [detail]})


def profile_csv(stream: BinaryIO, *, max_columns: int) -> CsvProfile:
    """Read the whole CSV once; ValidationFailed naming `file` if it is empty, not UTF-8, ragged, or its
    header names a column twice or more than `max_columns` columns."""
    raw = _HashingReader(stream)
    text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 16), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if not header or all(not name.strip() for name in header):
            raise _invalid("The file is empty or has no header row.")
        names = [name.strip() for name in header]
        refused = header_problem(names, max_columns=max_columns)
        if refused:
            raise _invalid(refused)
        columns = [_Column(name) for name in names]
        rows = 0
        for record in reader:
            if not record:
                continue  # a blank line is no row
            if len(record) != len(columns):
                raise _invalid(f"Line {reader.line_num} has {len(record)} fields; the header has {len(columns)}.")
            for column, value in zip(columns, record):
                column.observe(value)
            rows += 1
    except UnicodeDecodeError:
        raise _invalid("The file is not UTF-8 text, so it is not a CSV.") from None
    except csv.Error as exc:
        raise _invalid(f"The file is not valid CSV: {exc}.") from None
    if rows == 0:
        raise _invalid("The file has a header but no data rows.")
    return CsvProfile(sha256=raw.digest.hexdigest(), size=raw.size, rows=rows,
                      columns=[column.describe() for column in columns])
