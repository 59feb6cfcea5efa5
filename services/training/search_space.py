"""The hyperparameter search space of a training request: validated once, then converted per strategy.

The request's format is JSON, one entry per estimator parameter:
    {"C": {"type": "float", "low": 0.01, "high": 100, "log": true},
     "max_depth": {"type": "int", "low": 2, "high": 12},
     "kernel": {"type": "categorical", "choices": ["rbf", "linear"]}}
`parse_search_space` checks it against the estimator (real parameter names, values sklearn accepts) and
returns the normalised form (every key present, numbers typed, names sorted) that the training spec
stores; the converters to each optimizer's terms (optimizers.py) read only that normalised form.
It imports no ML library itself (the API validates requests with it); the estimators it checks
against import scikit-learn when they are built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from shared.errors import ValidationFailed

MAX_PARAMS = 20
MAX_CHOICES = 100
# Set from the training's own random_state; searching it would make results depend on luck, not params.
RESERVED_PARAMS = frozenset({"random_state"})

_RANGE_KEYS = {"type", "low", "high", "log"}
_CATEGORICAL_KEYS = {"type", "choices"}


class SearchSpaceError(ValidationFailed):
    """The search space names parameters or ranges the estimator cannot take; `errors` is keyed by parameter."""


def parse_search_space(raw: Any, estimator_spec: Any, model_type: str) -> dict[str, dict[str, Any]]:
    """Validate `raw` (None means the estimator's default space) and return its normalised form.

    SearchSpaceError.errors maps each bad parameter name (or "_schema" for the space as a whole) to its
    messages; the caller nests them under the request field that holds the space.
    """
    if raw is None:
        raw = estimator_spec.default_space(model_type)
    if not isinstance(raw, Mapping):
        raise SearchSpaceError("The search space must be an object of parameter definitions.",
                               errors={"_schema": ["Must be an object mapping parameter names to ranges."]})
    if len(raw) > MAX_PARAMS:
        raise SearchSpaceError(f"The search space may name at most {MAX_PARAMS} parameters.",
                               errors={"_schema": [f"At most {MAX_PARAMS} parameters, got {len(raw)}."]})
    estimator = estimator_spec.make({}, random_state=0, early_stopping=False, model_type=model_type)
    known = set(estimator.get_params(deep=False)) - RESERVED_PARAMS
    space: dict[str, dict[str, Any]] = {}
    errors: dict[str, list[str]] = {}
    for name in sorted(raw):
        if name not in known:
            errors[name] = [
                f"{type(estimator).__name__} ({model_type}) has no tunable parameter {name!r}; "
                f"it has: {', '.join(sorted(known))}."]
            continue
        try:
            definition = _normalise(raw[name])
            _check_accepted(estimator_spec, model_type, name, definition)
        except ValueError as exc:
            errors[name] = [str(exc)]
            continue
        space[name] = definition
    if errors:
        raise SearchSpaceError("The search space has invalid parameters: " + ", ".join(errors), errors=errors)
    return space


def _normalise(definition: Any) -> dict[str, Any]:
    if not isinstance(definition, Mapping) or definition.get("type") not in ("float", "int", "categorical"):
        raise ValueError('Must be an object with "type" one of "float", "int", "categorical".')
    kind = definition["type"]
    allowed = _CATEGORICAL_KEYS if kind == "categorical" else _RANGE_KEYS
    unknown = sorted(set(definition) - allowed)
    if unknown:
        raise ValueError(f"Unknown keys for a {kind} parameter: {', '.join(unknown)} (allowed: "
                         f"{', '.join(sorted(allowed))}).")
    if kind == "categorical":
        return {"type": "categorical", "choices": _choices(definition.get("choices"))}
    low, high, log = definition.get("low"), definition.get("high"), definition.get("log", False)
    if kind == "int":
        if not (_is_int(low) and _is_int(high)):
            raise ValueError('"low" and "high" must be integers.')
    elif not (_is_number(low) and _is_number(high)):
        raise ValueError('"low" and "high" must be finite numbers.')
    if not isinstance(log, bool):
        raise ValueError('"log" must be true or false.')
    if low >= high:
        raise ValueError(f'"low" ({low}) must be less than "high" ({high}).')
    if log and low <= 0:
        raise ValueError(f'A log-scaled range needs "low" > 0, got {low}.')
    cast = int if kind == "int" else float
    return {"type": kind, "low": cast(low), "high": cast(high), "log": log}


def _choices(choices: Any) -> list[Any]:
    if not isinstance(choices, list) or not choices:
        raise ValueError('"choices" must be a non-empty list.')
    if len(choices) > MAX_CHOICES:
        raise ValueError(f'"choices" may hold at most {MAX_CHOICES} values.')
    if not all(c is None or isinstance(c, (str, bool, int)) or _is_number(c) for c in choices):
        raise ValueError('"choices" must be strings, numbers, booleans or null.')
    # (type, value) keys, because True == 1 == 1.0 in Python but they are different choices for an estimator.
    if len({(type(c), c) for c in choices}) != len(choices):
        raise ValueError('"choices" must be distinct.')
    return list(choices)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _check_accepted(estimator_spec: Any, model_type: str, name: str, definition: dict[str, Any]) -> None:
    """Ask scikit-learn whether the estimator takes the range's ends and every choice.

    `_validate_params` is the check sklearn itself runs at `fit` (its parameter constraints, one
    parameter at a time); running it now turns "C must be > 0" into a 422 instead of a failed job.
    """
    values = definition["choices"] if definition["type"] == "categorical" else [definition["low"], definition["high"]]
    for value in values:
        _check_value(estimator_spec, model_type, name, value, doing="searched")


def _check_value(estimator_spec: Any, model_type: str, name: str, value: Any, *, doing: str) -> None:
    try:
        estimator = estimator_spec.make({name: value}, random_state=0, early_stopping=False, model_type=model_type)
    except TypeError:
        # make() passes this parameter itself (n_jobs, max_iter, early-stopping settings...).
        raise ValueError(f"{name!r} is set by the platform for this estimator and cannot be {doing}.") from None
    try:
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not accepted: {exc}") from None


class HyperparameterError(ValidationFailed):
    """A model's hyperparameters name parameters or values the estimator cannot take; `errors` is keyed by name."""


def parse_fixed_params(raw: Mapping[str, Any], estimator_spec: Any, model_type: str) -> dict[str, Any]:
    """Check fixed parameters (a model's hyperparameters) against the estimator and return them.

    Unlike a search space, `random_state` may be fixed: it seeds the estimator (estimators.make).
    HyperparameterError.errors maps each parameter the estimator does not take, or takes but not with
    this value, to its message.
    """
    estimator = estimator_spec.make({}, random_state=0, early_stopping=False, model_type=model_type)
    known = set(estimator.get_params(deep=False))
    errors: dict[str, list[str]] = {}
    for name in sorted(raw):
        if name not in known:
            errors[name] = [f"{type(estimator).__name__} ({model_type}) takes no parameter {name!r}; "
                            f"it takes: {', '.join(sorted(known))}."]
            continue
        try:
            _check_value(estimator_spec, model_type, name, raw[name], doing="set")
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise HyperparameterError(f"{type(estimator).__name__} ({model_type}) cannot take "
                                  f"{', '.join(map(repr, errors))}.", errors=errors)
    return dict(raw)


def space_size(space: Mapping[str, Mapping[str, Any]]) -> int | None:
    """How many distinct candidates the space holds, or None when a float range makes it infinite."""
    size = 1
    for definition in space.values():
        if definition["type"] == "float":
            return None
        size *= len(definition["choices"]) if definition["type"] == "categorical" else (
            definition["high"] - definition["low"] + 1)
    return size


def choice_index(choices: list[Any], value: Any) -> int:
    """The index of `value` among a categorical parameter's choices (1 and True are different choices)."""
    for index, choice in enumerate(choices):
        if type(choice) is type(value) and choice == value:
            return index
    # A stored 1.0 may come back from JSON as 1 (or the reverse); numbers match by value, booleans never do.
    for index, choice in enumerate(choices):
        if _is_number(choice) and _is_number(value) and choice == value:
            return index
    raise ValueError(f"{value!r} is not one of the choices {choices!r}")
