"""The five HPO strategies (strategies.make_strategy picks one) and the search space in each one's terms.

The optimizers are seeded with a seed derived from the training's random_state and the trial number.

How stored trial states reach each optimizer:
- complete (finite value): told as a result everywhere.
- pruned (value = mean of the folds it ran): tpe gets Optuna's PRUNED state (ranked below every
  complete trial); bayesian and genetic count it as complete at that partial mean, which ranks it low,
  as the median rule only prunes trials worse than most.
- running: tpe adds it as RUNNING (its constant liar keeps parallel asks apart); bayesian tells it the
  worst value seen so far (the same pessimistic lie); genetic keeps it out of its population.
- failed, cancelled, and complete without a finite value: not told.
"""

from __future__ import annotations

import math
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from scipy import stats
from skopt import Optimizer
from skopt.space import Categorical, Dimension, Integer, Real
from sklearn.model_selection import ParameterGrid, ParameterSampler
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from services.training.search_space import choice_index, space_size
from services.training.strategies import COMPLETE, PRUNED, RUNNING, TrialRecord

# Optuna's GA samplers keep a trial's generation, and the parents chosen for a generation, under these keys.
GENERATION_KEY = "NSGAIISampler:generation"
PARENTS_KEY_PREFIX = "NSGAIISampler:parent:"
# Points per numeric range in a grid: 5 per parameter keeps a 4-parameter grid at 625 candidates.
GRID_POINTS = 5


def trial_seed(random_state: int, number: int) -> int:
    """A 32-bit seed for one ask, mixed from the training's random_state and the trial number."""
    return int(np.random.SeedSequence([random_state % 2**32, number]).generate_state(1)[0])


class _SpaceStrategy(ABC):
    def __init__(self, *, space: Mapping[str, Mapping[str, Any]], max_trials: int, direction: str,
                 random_state: int):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
        self.space, self.direction, self.random_state = dict(space), direction, random_state
        size = space_size(self.space)
        # A finite space (choices and integer ranges only) holds no more distinct candidates than its size.
        self.capacity = max_trials if size is None else min(max_trials, size)

    def ask(self, history: Sequence[TrialRecord], number: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The params (JSON-safe) and strategy attrs for trial `number` (0-based), given every stored trial."""
        if not 0 <= number < self.capacity:
            raise ValueError(f"trial number {number} is outside this strategy's capacity {self.capacity}")
        if not self.space:
            return {}, {}
        return self._ask(sorted(history, key=lambda record: record.number), number)

    @abstractmethod
    def _ask(self, history: list[TrialRecord], number: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ask proper, for a non-empty space and a number inside the capacity."""


class GridStrategy(_SpaceStrategy):
    """scikit-learn's ParameterGrid; a grid larger than max_trials is sampled without replacement."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.grid = ParameterGrid(to_parameter_grid(self.space))
        size = len(self.grid)
        self.capacity = min(size, kwargs["max_trials"])
        # The grid's first max_trials points would vary only the last parameters; a seeded sample covers all.
        self.order = range(size) if size <= self.capacity else random.Random(self.random_state).sample(
            range(size), self.capacity)

    def _ask(self, history, number):
        return json_safe_params(self.space, self.grid[self.order[number]]), {}


class RandomStrategy(_SpaceStrategy):
    """scikit-learn's ParameterSampler(n_iter=capacity, random_state): trial n is its n-th draw."""

    def _ask(self, history, number):
        sampler = ParameterSampler(to_sampler_distributions(self.space), n_iter=self.capacity,
                                   random_state=self.random_state % 2**32)
        params = next(islice(sampler, number, None))
        return json_safe_params(self.space, params), {}


class _OptunaStrategy(_SpaceStrategy):
    """A fresh in-memory Optuna study per ask, filled from the history (no Optuna storage of its own)."""

    pruned_state = TrialState.PRUNED

    @abstractmethod
    def _sampler(self, seed: int) -> BaseSampler:
        """A fresh sampler seeded for this ask."""

    def _ask(self, history, number):
        # Each ask creates an in-memory study, and that logs one INFO line per ask into the workers' logs.
        optuna.logging.get_logger("optuna.storages._in_memory").setLevel(optuna.logging.WARNING)
        storage = InMemoryStorage()
        study_id = storage.create_new_study([StudyDirection[self.direction.upper()]])
        distributions = to_optuna_distributions(self.space)
        trial_ids = {}
        for record in history:
            frozen = self._frozen(record, distributions)
            if frozen is not None:
                trial_ids[record.number] = storage.create_new_trial(study_id, template_trial=frozen)
        self._restore(storage, study_id, history, trial_ids)
        study = optuna.load_study(study_name=storage.get_study_name_from_id(study_id), storage=storage,
                                  sampler=self._sampler(trial_seed(self.random_state, number)))
        trial = study.ask(distributions)
        asked = storage.get_all_trials(study_id, deepcopy=False)[-1]
        attrs = self._attrs(storage, study_id, asked.system_attrs, trial_ids)
        return json_safe_params(self.space, trial.params), attrs

    def _frozen(self, record: TrialRecord, distributions: dict[str, BaseDistribution]) -> FrozenTrial | None:
        value = record.told_value
        system_attrs = {key: v for key, v in record.attrs.items() if key == GENERATION_KEY}
        common = {"params": record.params, "distributions": distributions, "system_attrs": system_attrs}
        if record.state == COMPLETE and value is not None:
            return create_trial(state=TrialState.COMPLETE, value=value, **common)
        if record.state == PRUNED and value is not None:
            if self.pruned_state == TrialState.COMPLETE:
                return create_trial(state=TrialState.COMPLETE, value=value, **common)
            return create_trial(state=TrialState.PRUNED, intermediate_values={0: value}, **common)
        if record.state == RUNNING:
            return create_trial(state=TrialState.RUNNING, **common)
        return None

    def _restore(self, storage, study_id, history, trial_ids) -> None:
        """Put back study-level sampler state that the trial attrs carry (none for TPE)."""

    def _attrs(self, storage, study_id, system_attrs, trial_ids) -> dict[str, Any]:
        return {}


class TPEStrategy(_OptunaStrategy):
    """Optuna's TPESampler with constant_liar, so trials asked while others run are spread apart."""

    def _sampler(self, seed):
        return TPESampler(seed=seed, constant_liar=True)


class GeneticStrategy(_OptunaStrategy):
    """Optuna's NSGAIISampler, single objective, its population sized to the budget.

    The GA's state is each trial's generation plus the parents chosen for each generation; both travel in
    the trial attrs (parents by trial number) so the rebuilt study is the one a long-lived study would be.
    """

    pruned_state = TrialState.COMPLETE

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Optuna's default of 50 makes a 50-trial budget pure random; 4+ generations need a smaller one.
        self.population_size = min(max(kwargs["max_trials"] // 4, 10), 20)

    def _sampler(self, seed):
        return NSGAIISampler(population_size=self.population_size, seed=seed)

    def _restore(self, storage, study_id, history, trial_ids):
        chosen: dict[str, list[int]] = {}
        for record in history:  # sorted by number: the first trial of a generation recorded its parents
            for key, numbers in record.attrs.items():
                if key.startswith(PARENTS_KEY_PREFIX) and key not in chosen:
                    chosen[key] = numbers
        for key, numbers in chosen.items():
            if all(n in trial_ids for n in numbers):
                storage.set_study_system_attr(study_id, key, [trial_ids[n] for n in numbers])

    def _attrs(self, storage, study_id, system_attrs, trial_ids):
        generation = system_attrs[GENERATION_KEY]
        attrs: dict[str, Any] = {GENERATION_KEY: int(generation)}
        parents = storage.get_study_system_attrs(study_id).get(f"{PARENTS_KEY_PREFIX}{generation}")
        if parents is not None:
            number_of = {trial_id: n for n, trial_id in trial_ids.items()}
            attrs[f"{PARENTS_KEY_PREFIX}{generation}"] = [number_of[trial_id] for trial_id in parents]
        return attrs


class BayesianStrategy(_SpaceStrategy):
    """scikit-optimize's Optimizer: a Gaussian process with the gp_hedge acquisition portfolio."""

    def _ask(self, history, number):
        optimizer = Optimizer(to_skopt_dimensions(self.space), base_estimator="GP", acq_func="gp_hedge",
                              random_state=trial_seed(self.random_state, number))
        # skopt minimises; a maximised metric is told negated.
        sign = -1.0 if self.direction == "maximize" else 1.0
        points, losses = [], []
        for record in history:
            if record.told_value is not None:
                points.append(params_to_skopt(self.space, record.params))
                losses.append(sign * record.told_value)
        running = [params_to_skopt(self.space, r.params) for r in history if r.state == RUNNING]
        if losses and running:
            lie = max(losses)
            points, losses = points + running, losses + [lie] * len(running)
        # The GP's matrices are tiny (one row per trial); BLAS threads only contend with the trial workers
        # on the same cores (measured: 1.8 s -> 0.4 s median per ask at 50 trials on a busy 2-core machine).
        with threadpool_limits(limits=1), warnings.catch_warnings():
            # In a small discrete space the GP's best point is often one already tried; skopt then warns
            # and proposes it (or a random point) anyway. That is expected here, not a fault.
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point",
                                    category=UserWarning)
            if points:
                optimizer.tell(points, losses)
            point = optimizer.ask()
        return params_from_skopt(self.space, point), {}


STRATEGIES: dict[str, type[_SpaceStrategy]] = {
    "grid": GridStrategy, "random": RandomStrategy, "tpe": TPEStrategy, "bayesian": BayesianStrategy,
    "genetic": GeneticStrategy,
}


# ---- the search space in each optimizer's terms --------------------------------------------------

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
        point.append(choice_index(definition["choices"], value) if definition["type"] == "categorical" else value)
    return point


def params_from_skopt(space: Mapping[str, Mapping[str, Any]], point: list[Any]) -> dict[str, Any]:
    """A skopt point (numpy scalars, choice indices) as JSON-safe params."""
    params = {}
    for name, value in zip(sorted(space), point, strict=True):
        definition = space[name]
        params[name] = definition["choices"][int(value)] if definition["type"] == "categorical" else value
    return json_safe_params(space, params)


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
            safe[name] = definition["choices"][choice_index(definition["choices"], _plain(value))]
    return safe


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
