"""The instances of a predict request, checked against the model's features before it sees them.

Errors nest as marshmallow nests them (`{"instances": {"3": {"age": ["Not a valid number."]}}}`) and use
its messages, so a client reads them as it reads every other 422 of the platform. Only the first
MAX_REPORTED_ROWS bad rows are named: a 10,000-row batch of bad rows must not answer a megabyte of errors.

Missing values: null is accepted for a feature only where the training profile shows it missing
(`nullable`: LoadedModel.nullable). The pipeline would impute any null, but only those imputations
were part of training and scoring; a null anywhere else is far likelier a client's bug than a
measurement, and answering it with a guess would hide it. An uploaded model (no profile) takes none.

This runs on every request, so a row that is right costs a few C-level set and map calls; the
per-field walk that names what is wrong runs only for a row that fails them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from operator import itemgetter
from typing import Any, Callable

from shared.errors import PayloadTooLarge, ValidationFailed

MAX_REPORTED_ROWS = 20
NUMBER_TYPES = frozenset({int, float})
CATEGORY_TYPES = frozenset({str, int, bool})

NOT_A_LIST = "Must be a list of objects, one per instance."
EMPTY = "Must hold at least one instance."
NOT_AN_OBJECT = "Invalid input type: each instance must be an object of feature values."
MISSING = "Missing data for required field."
UNKNOWN = "Unknown field."
NULL = "Field may not be null."
NOT_A_NUMBER = "Not a valid number."
NOT_FINITE = "Special numeric values (nan or infinity) are not permitted."
NOT_A_CATEGORY = "Not a valid category: send a string, an integer or a boolean."


def _values(names: list[str]) -> Callable[[dict], tuple]:
    """A row's values for `names` as a tuple, by one C-level call (itemgetter of one name is no tuple)."""
    if not names:
        return lambda row: ()
    getter = itemgetter(*names)
    return getter if len(names) > 1 else lambda row: (getter(row),)


def _finite(values: tuple) -> bool:
    try:
        return all(map(math.isfinite, values))
    except OverflowError:  # an integer beyond any float
        return False


def _number_error(value: Any, nullable: bool) -> str | None:
    if value is None:
        return None if nullable else NULL
    if type(value) not in NUMBER_TYPES:  # bool is an int subclass, and not a number here
        return NOT_A_NUMBER
    return None if _finite((value,)) else NOT_FINITE


def _category_error(value: Any, nullable: bool) -> str | None:
    if value is None:
        return None if nullable else NULL
    return None if type(value) in CATEGORY_TYPES else NOT_A_CATEGORY


class _Checker:
    """The checks for one model's features, prepared once per model (see `_checker`)."""

    def __init__(self, features: tuple[str, ...], kinds: tuple[tuple[str, str], ...], nullable: frozenset[str]):
        self.features, self.kinds, self.nullable = features, dict(kinds), nullable
        self.expected = frozenset(features)
        numeric = [name for name in features if self.kinds.get(name, "numeric") == "numeric"]
        self.numbers = _values(numeric)
        self.categories = _values([name for name in features if name not in set(numeric)])

    def passes(self, row: Any) -> bool:
        """True for a right row, by the fast checks only; False sends it to `errors` for the details."""
        if type(row) is not dict or row.keys() != self.expected:
            return False
        numbers = self.numbers(row)
        if not set(map(type, numbers)) <= NUMBER_TYPES or not _finite(numbers):
            return False
        return set(map(type, self.categories(row))) <= CATEGORY_TYPES

    def errors(self, row: Any) -> dict[str, list[str]]:
        if not isinstance(row, dict):
            return {"_schema": [NOT_AN_OBJECT]}
        found: dict[str, list[str]] = {}
        for name in self.features:
            if name not in row:
                found[name] = [MISSING]
                continue
            check = _category_error if self.kinds.get(name) == "categorical" else _number_error
            message = check(row[name], name in self.nullable)
            if message:
                found[name] = [message]
        for name in row.keys() - self.expected:
            found[str(name)] = [UNKNOWN]
        return found


@lru_cache(maxsize=64)
def _checker(features: tuple[str, ...], kinds: tuple[tuple[str, str], ...], nullable: frozenset[str]) -> _Checker:
    # A replica serves a few versions: their checkers are built once, not on each request.
    return _Checker(features, kinds, nullable)


def validate_instances(instances: Any, *, features: list[str], kinds: dict[str, str], max_rows: int,
                       nullable: frozenset[str] = frozenset()) -> list[dict]:
    """`instances` unchanged if every row has exactly `features`, of the right kind; ValidationFailed naming
    the rows and fields otherwise, PayloadTooLarge past `max_rows`. `nullable` features may be null."""
    if not isinstance(instances, list):
        raise ValidationFailed("instances must be a list of objects.", errors={"instances": [NOT_A_LIST]})
    if not instances:
        raise ValidationFailed("instances is empty; send at least one.", errors={"instances": [EMPTY]})
    if len(instances) > max_rows:
        raise PayloadTooLarge(f"{len(instances)} instances is more than the {max_rows} one request may hold; "
                              "split them into smaller batches.")
    checker = _checker(tuple(features), tuple(kinds.items()), frozenset(nullable))
    passes = checker.passes
    if all(map(passes, instances)):
        return instances
    bad: dict[str, dict[str, list[str]]] = {}
    for index, row in enumerate(instances):
        if passes(row):
            continue
        found = checker.errors(row)
        if found:  # a nullable feature left null fails the fast check only
            bad[str(index)] = found
            if len(bad) == MAX_REPORTED_ROWS:
                break
    if not bad:
        return instances
    rows = ", ".join(bad)
    more = f" (the first {MAX_REPORTED_ROWS} bad instances are listed)" if len(bad) == MAX_REPORTED_ROWS else ""
    raise ValidationFailed(f"Instances {rows} do not match the model's features{more}.", errors={"instances": bad})
