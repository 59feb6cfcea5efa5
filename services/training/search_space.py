"""The hyperparameter search space of a training request: validated once, then converted per strategy.

The request's format is JSON, one entry per estimator parameter:
    {"C": {"type": "float", "low": 0.01, "high": 100, "log": true},
     "max_depth": {"type": "int", "low": 2, "high": 12},
     "kernel": {"type": "categorical", "choices": ["rbf", "linear"]}}
`parse_search_space` checks it against the estimator (real parameter names, values sklearn accepts) and
returns the normalised form (every key present, numbers typed, names sorted) that the training spec
stores; the converters below read only that normalised form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from scipy import stats
from skopt.space import Categorical, Dimension, Integer, Real
from sklearn.utils import check_random_state

from shared.errors import ValidationFailed

MAX_PARAMS = 20
MAX_CHOICES = 100
# Points per numeric range in a grid: 5 per parameter keeps a 4-parameter grid at 625 candidates.
GRID_POINTS = 5
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
        try:
            estimator = estimator_spec.make({name: value}, random_state=0, early_stopping=False,
                                            model_type=model_type)
        except TypeError:
            # make() passes this parameter itself (n_jobs, max_iter, early-stopping settings...).
            raise ValueError(f"{name!r} is set by the platform for this estimator and cannot be searched.") from None
        try:
            estimator._validate_params()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{value!r} is not accepted: {exc}") from None


def space_size(space: Mapping[str, Mapping[str, Any]]) -> int | None:
    """How many distinct candidates the space holds, or None when a float range makes it infinite."""
    size = 1
    for definition in space.values():
        if definition["type"] == "float":
            return None
        size *= len(definition["choices"]) if definition["type"] == "categorical" else (
            definition["high"] - definition["low"] + 1)
    return size


def to_optuna_distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, BaseDistribution]:
    """Optuna distributions, one per parameter, for `study.ask`."""
    distributions: dict[str, BaseDistribution] = {}
    for name in sorted(space):
        definition = space[name]
        if definition["type"] == "categorical":
            distributions[name] = CategoricalDistribution(definition["choices"])
        elif definition["type"] == "int":
            distributions[name] = IntDistribution(definition["low"], definition["high"], log=definition["log"])
        else:
            distributions[name] = FloatDistribution(definition["low"], definition["high"], log=definition["log"])
    return distributions


def to_skopt_dimensions(space: Mapping[str, Mapping[str, Any]]) -> list[Dimension]:
    """scikit-optimize dimensions in sorted parameter order (the order of skopt's point lists).

    A categorical parameter becomes the category of its choice's index: skopt sorts and encodes category
    labels, which fails on mixed or null choices; `params_from_skopt` maps the index back.
    """
    dimensions: list[Dimension] = []
    for name in sorted(space):
        definition = space[name]
        prior = "log-uniform" if definition.get("log") else "uniform"
        if definition["type"] == "categorical":
            dimensions.append(Categorical(list(range(len(definition["choices"]))), name=name))
        elif definition["type"] == "int":
            dimensions.append(Integer(definition["low"], definition["high"], prior=prior, name=name))
        else:
            dimensions.append(Real(definition["low"], definition["high"], prior=prior, name=name))
    return dimensions


def params_to_skopt(space: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> list[Any]:
    """A stored trial's params as a point in `to_skopt_dimensions` order."""
    point = []
    for name in sorted(space):
        definition = space[name]
        value = params[name]
        point.append(_choice_index(definition["choices"], value) if definition["type"] == "categorical" else value)
    return point


def params_from_skopt(space: Mapping[str, Mapping[str, Any]], point: list[Any]) -> dict[str, Any]:
    """A skopt point (numpy scalars, choice indices) as JSON-safe params."""
    params = {}
    for name, value in zip(sorted(space), point, strict=True):
        definition = space[name]
        params[name] = definition["choices"][int(value)] if definition["type"] == "categorical" else value
    return json_safe_params(space, params)


def _choice_index(choices: list[Any], value: Any) -> int:
    for index, choice in enumerate(choices):
        if type(choice) is type(value) and choice == value:
            return index
    # A stored 1.0 may come back from JSON as 1 (or the reverse); numbers match by value, booleans never do.
    for index, choice in enumerate(choices):
        if _is_number(choice) and _is_number(value) and choice == value:
            return index
    raise ValueError(f"{value!r} is not one of the choices {choices!r}")


def to_parameter_grid(space: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A `ParameterGrid` dict: choices as given, numeric ranges as GRID_POINTS evenly (or log-) spaced points."""
    grid: dict[str, list[Any]] = {}
    for name in sorted(space):
        definition = space[name]
        if definition["type"] == "categorical":
            grid[name] = list(definition["choices"])
            continue
        low, high = definition["low"], definition["high"]
        points = np.geomspace(low, high, GRID_POINTS) if definition["log"] else np.linspace(low, high, GRID_POINTS)
        if definition["type"] == "int":
            grid[name] = sorted({int(round(p)) for p in points})
        else:
            # 12 significant digits: 0.1 rather than 0.10000000000000002 in the stored trials.
            grid[name] = [float(f"{p:.12g}") for p in points]
    return grid


def to_sampler_distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A `ParameterSampler` dict: scipy distributions for ranges, lists for choices."""
    distributions: dict[str, Any] = {}
    for name in sorted(space):
        definition = space[name]
        kind = definition["type"]
        if kind == "categorical":
            distributions[name] = list(definition["choices"])
        elif kind == "float":
            low, high = definition["low"], definition["high"]
            distributions[name] = stats.loguniform(low, high) if definition["log"] else stats.uniform(low, high - low)
        elif definition["log"]:
            distributions[name] = LogUniformInt(definition["low"], definition["high"])
        else:
            distributions[name] = stats.randint(definition["low"], definition["high"] + 1)
    return distributions


class LogUniformInt:
    """Integers in [low, high] drawn log-uniformly: floor(exp(U(log low, log(high + 1))))."""

    def __init__(self, low: int, high: int):
        self.low, self.high = low, high

    def rvs(self, random_state: Any = None) -> int:
        rng = check_random_state(random_state)
        value = math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1))))
        return min(max(value, self.low), self.high)


def json_safe_params(space: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as plain Python values of each parameter's type (numpy scalars do not pass Celery's JSON)."""
    safe = {}
    for name in sorted(space):
        definition, value = space[name], params[name]
        if definition["type"] == "int":
            safe[name] = int(value)
        elif definition["type"] == "float":
            safe[name] = min(max(float(value), definition["low"]), definition["high"])
        else:
            safe[name] = definition["choices"][_choice_index(definition["choices"], _plain(value))]
    return safe


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
