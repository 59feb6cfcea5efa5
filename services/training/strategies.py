"""The five HPO strategies behind one stateless ask: each call rebuilds the optimizer from the stored trials.

Nothing lives only in memory between asks, so a coordinator killed mid-job loses nothing: the next ask
reads the same trials and continues. An ask is deterministic in (history, number, random_state): the
optimizers are seeded with a seed derived from the training's random_state and the trial number.

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
from abc import ABC, abstractmethod
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from skopt import Optimizer
from sklearn.model_selection import ParameterGrid, ParameterSampler
from threadpoolctl import threadpool_limits

from services.training.search_space import (
    json_safe_params, params_from_skopt, params_to_skopt, space_size, to_optuna_distributions,
    to_parameter_grid, to_sampler_distributions, to_skopt_dimensions,
)

DEFAULT_STRATEGY = "tpe"
TRIAL_STATES = ("running", "complete", "pruned", "failed", "cancelled")
# Optuna's GA samplers keep a trial's generation, and the parents chosen for a generation, under these keys.
GENERATION_KEY = "NSGAIISampler:generation"
PARENTS_KEY_PREFIX = "NSGAIISampler:parent:"


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial as the strategies see it; `attrs` is strategy-private state to store with it."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.state not in TRIAL_STATES:
            raise ValueError(f"trial state must be one of {', '.join(TRIAL_STATES)}, got {self.state!r}")

    @property
    def told_value(self) -> float | None:
        """The value an optimizer may learn from, or None when the trial has none to give."""
        if self.state in ("complete", "pruned") and self.value is not None and math.isfinite(self.value):
            return float(self.value)
        return None


class Strategy(Protocol):
    """What the coordinator uses: how many trials the strategy can give, and the ask for trial `number`."""

    capacity: int

    def ask(self, history: Sequence[TrialRecord], number: int) -> tuple[dict[str, Any], dict[str, Any]]: ...


def make_strategy(spec: Any) -> Strategy:
    """The strategy `spec.strategy` names, over `spec.search_space` (already normalised)."""
    try:
        kind = STRATEGIES[spec.strategy]
    except KeyError:
        raise ValueError(f"Unknown strategy {spec.strategy!r}; choose one of {', '.join(STRATEGIES)}.") from None
    return kind(space=spec.search_space, max_trials=spec.max_trials, direction=spec.direction,
                random_state=spec.random_state)


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
        if record.state == "complete" and value is not None:
            return create_trial(state=TrialState.COMPLETE, value=value, **common)
        if record.state == "pruned" and value is not None:
            if self.pruned_state == TrialState.COMPLETE:
                return create_trial(state=TrialState.COMPLETE, value=value, **common)
            return create_trial(state=TrialState.PRUNED, intermediate_values={0: value}, **common)
        if record.state == "running":
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
        running = [params_to_skopt(self.space, r.params) for r in history if r.state == "running"]
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


def should_prune(completed_fold_scores: Sequence[Sequence[float]], current: Sequence[float], direction: str, *,
                 min_trials: int = 5, min_folds: int = 2) -> bool:
    """The median rule (Optuna's MedianPruner on running means): stop a trial that is losing.

    After k >= min_folds folds, the trial's running mean over its first k folds is compared with the
    median of the running means over the first k folds of the completed trials that ran at least k
    folds; with at least min_trials of those, the trial is pruned when it is strictly worse than that
    median (below it when maximizing, above it when minimizing). A trial whose mean is not a number
    is pruned, as Optuna does; completed trials without a finite mean are left out of the median.
    """
    folds = len(current)
    if folds < min_folds:
        return False
    means = [statistics.fmean(scores[:folds]) for scores in completed_fold_scores if len(scores) >= folds]
    means = [m for m in means if math.isfinite(m)]
    if len(means) < min_trials:
        return False
    mean = statistics.fmean(current)
    if not math.isfinite(mean):
        return True
    median = statistics.median(means)
    return mean < median if direction == "maximize" else mean > median
