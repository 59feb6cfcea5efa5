"""The five HPO strategies as a stateless ask over stored trials, and the median pruning rule."""

from __future__ import annotations

import json
import math
import statistics
import time

import optuna
import pytest
from optuna.samplers import NSGAIISampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState
from sklearn.model_selection import ParameterGrid, ParameterSampler

from services.training.estimators import resolve_estimator
from services.training.optimizers import (
    GENERATION_KEY, PARENTS_KEY_PREFIX, STRATEGIES, to_optuna_distributions, to_parameter_grid,
    to_sampler_distributions, trial_seed,
)
from services.training.search_space import parse_search_space
from services.training.spec import TrainingSpec
from services.training.strategies import TrialRecord, make_strategy, should_prune

# Every warning is an error here: optuna's experimental and skopt's warnings must be dealt with where we call them.
# Any warning from optuna, skopt or scikit-learn is a bug here (ResourceWarnings from unrelated
# garbage collection are not).
pytestmark = [pytest.mark.filterwarnings("error::DeprecationWarning"), pytest.mark.filterwarnings("error::FutureWarning"),
              pytest.mark.filterwarnings("error::UserWarning"), pytest.mark.filterwarnings("error::RuntimeWarning")]

FOREST = resolve_estimator("random_forest", "classification")
SPACE = parse_search_space({
    "n_estimators": {"type": "int", "low": 10, "high": 200, "log": True},
    "max_features": {"type": "float", "low": 0.1, "high": 1.0},
    "max_depth": {"type": "int", "low": 2, "high": 12},
    "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
}, FOREST, "classification")
ALL = sorted(STRATEGIES)
# Bayesian asks cost a Gaussian-process fit each; its tests use smaller budgets to stay fast.
LEARNING_BUDGETS = {"tpe": 30, "genetic": 30, "bayesian": 18}


def objective(params) -> float:
    """A cheap quadratic bowl over the mixed space, best at n_estimators=50, max_features=0.4, max_depth=7."""
    return (-math.log(params["n_estimators"] / 50) ** 2 - 4 * (params["max_features"] - 0.4) ** 2
            - 0.02 * (params["max_depth"] - 7) ** 2 - (0.3 if params["class_weight"] is None else 0.0))


def strategy(name, *, max_trials=30, direction="maximize", random_state=0, space=SPACE):
    spec = TrainingSpec(model_type="classification", features=("a",), target="y", estimator="random_forest",
                        strategy=name, max_trials=max_trials, direction=direction, random_state=random_state,
                        search_space=space, metric="accuracy")
    return make_strategy(spec)


def run(chosen, trials, *, sign=1.0):
    """Ask and complete `trials` trials one after another, as a coordinator with parallelism 1 would."""
    history: list[TrialRecord] = []
    for number in range(trials):
        params, attrs = chosen.ask(history, number)
        history.append(TrialRecord(number, params, "complete", sign * objective(params), attrs))
    return history


def assert_inside_the_space(params):
    assert json.loads(json.dumps(params)) == params
    assert type(params["n_estimators"]) is int and 10 <= params["n_estimators"] <= 200
    assert type(params["max_depth"]) is int and 2 <= params["max_depth"] <= 12
    assert type(params["max_features"]) is float and 0.1 <= params["max_features"] <= 1.0
    assert params["class_weight"] in (None, "balanced")
    FOREST.make(params, random_state=0, early_stopping=False, model_type="classification")._validate_params()


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_asks_json_safe_params_the_estimator_accepts(name):
    history = run(strategy(name, max_trials=14), 14)
    for record in history:
        assert_inside_the_space(record.params)
    assert len({json.dumps(r.params, sort_keys=True) for r in history}) >= 12


@pytest.mark.parametrize("name", ALL)
def test_the_same_history_number_and_random_state_give_the_same_params(name):
    history = run(strategy(name, max_trials=14), 12)
    history.append(TrialRecord(12, history[0].params, "running"))
    first = strategy(name, max_trials=14).ask(history, 13)
    assert strategy(name, max_trials=14).ask(list(reversed(history)), 13) == first
    assert strategy(name, max_trials=14, random_state=1).ask(history, 13) != first


@pytest.mark.parametrize("name", ["random", "tpe", "bayesian", "genetic"])
def test_trials_asked_while_others_run_differ(name):
    chosen = strategy(name, max_trials=20)
    history = run(chosen, 11)
    asked = []
    for number in range(11, 14):
        params, attrs = chosen.ask(history, number)
        asked.append(params)
        history.append(TrialRecord(number, params, "running", attrs=attrs))
    assert len({json.dumps(p, sort_keys=True) for p in asked}) == 3


@pytest.mark.parametrize("name", sorted(LEARNING_BUDGETS))
def test_model_based_strategies_do_better_after_their_random_start(name):
    gains = []
    for seed in range(3):
        values = [r.value for r in run(strategy(name, max_trials=LEARNING_BUDGETS[name], random_state=seed),
                                       LEARNING_BUDGETS[name])]
        gains.append(statistics.fmean(values[10:]) - statistics.fmean(values[:10]))
    assert statistics.fmean(gains) > 0.1, gains


@pytest.mark.parametrize("name", ALL)
def test_minimizing_the_negated_objective_asks_what_maximizing_it_does(name):
    trials = 12 if name == "bayesian" else 20
    up = run(strategy(name, max_trials=trials), trials)
    down = run(strategy(name, max_trials=trials, direction="minimize"), trials, sign=-1.0)
    assert [r.params for r in up] == [r.params for r in down]


def test_grid_walks_the_whole_parameter_grid_in_order_when_it_fits():
    space = {k: SPACE[k] for k in ("class_weight", "max_depth")}
    chosen = strategy("grid", max_trials=100, space=space)
    expected = list(ParameterGrid(to_parameter_grid(space)))
    assert chosen.capacity == len(expected) == 10
    assert [chosen.ask([], n)[0] for n in range(chosen.capacity)] == expected


def test_a_grid_larger_than_the_budget_is_sampled_without_repeats_across_every_parameter():
    chosen = strategy("grid", max_trials=40)
    asked = [chosen.ask([], n)[0] for n in range(chosen.capacity)]
    assert chosen.capacity == 40 and len({json.dumps(p, sort_keys=True) for p in asked}) == 40
    grid = to_parameter_grid(SPACE)
    for name in ("n_estimators", "max_features"):  # the first parameters vary too, not only the last
        assert len({p[name] for p in asked}) == len(grid[name])


def test_random_trial_n_is_the_nth_draw_of_scikit_learns_parameter_sampler():
    chosen = strategy("random", max_trials=8, random_state=7)
    expected = list(ParameterSampler(to_sampler_distributions(SPACE), n_iter=8, random_state=7))
    for number in (0, 5, 7):
        params = chosen.ask([], number)[0]
        assert params == pytest.approx(expected[number])


def test_a_finite_space_caps_every_strategy_at_its_size_and_an_empty_one_at_one_trial():
    finite = {k: SPACE[k] for k in ("class_weight", "max_depth")}
    # 2 class weights x 11 depths; the grid takes 5 of the depths
    assert {name: strategy(name, max_trials=50, space=finite).capacity for name in ALL} == {
        "bayesian": 22, "genetic": 22, "grid": 10, "random": 22, "tpe": 22}
    assert {name: strategy(name, max_trials=15, space=finite).capacity for name in ALL} == {
        "bayesian": 15, "genetic": 15, "grid": 10, "random": 15, "tpe": 15}
    for name in ALL:
        empty = strategy(name, max_trials=20, space={})
        assert empty.capacity == 1 and empty.ask([], 0) == ({}, {})


def test_asking_beyond_the_capacity_or_with_an_unknown_state_is_a_bug_and_fails_loudly():
    with pytest.raises(ValueError, match="capacity"):
        strategy("tpe", max_trials=5).ask([], 5)
    with pytest.raises(ValueError, match="Unknown strategy"):
        strategy("annealing")
    with pytest.raises(ValueError, match="trial state"):
        TrialRecord(0, {}, "queued")


def test_a_tpe_ask_rebuilt_from_stored_trials_equals_the_live_studys_ask():
    """The stored trials (complete, pruned with their partial mean, running) are the whole TPE state."""
    distributions = to_optuna_distributions(SPACE)
    live = optuna.create_study(direction="maximize", sampler=TPESampler(seed=3), storage=InMemoryStorage())
    history = []
    for number in range(16):
        trial = live.ask(distributions)
        value = objective(trial.params)
        if number < 12:
            live.tell(trial, value)
            history.append(TrialRecord(number, trial.params, "complete", value))
        elif number < 14:
            trial.report(value, 0)
            live.tell(trial, state=TrialState.PRUNED)
            history.append(TrialRecord(number, trial.params, "pruned", value))
        else:
            history.append(TrialRecord(number, trial.params, "running"))
    live.sampler = TPESampler(seed=trial_seed(5, 16), constant_liar=True)
    expected = live.ask(distributions).params
    assert strategy("tpe", random_state=5).ask(history, 16)[0] == expected


def test_the_genetic_strategy_keeps_each_generations_parents_once_chosen():
    """A late result from generation 0 must not change the parents generation 1 already breeds from,
    which is what a long-lived NSGA-II study does (it caches them); rebuilt studies get them from attrs."""
    chosen = strategy("genetic", max_trials=40)  # population 10
    history = run(chosen, 11)
    assert [r.attrs[GENERATION_KEY] for r in history] == [0] * 10 + [1]
    parents = history[10].attrs[f"{PARENTS_KEY_PREFIX}1"]
    assert sorted(parents) == list(range(10))
    late_best = {"n_estimators": 50, "max_features": 0.4, "max_depth": 7, "class_weight": "balanced"}
    history.append(TrialRecord(11, late_best, "complete", objective(late_best), {GENERATION_KEY: 0}))
    params, attrs = chosen.ask(history, 12)
    assert attrs == {GENERATION_KEY: 1, f"{PARENTS_KEY_PREFIX}1": parents}


def test_a_genetic_ask_rebuilt_from_stored_trials_equals_the_live_studys_ask():
    distributions = to_optuna_distributions(SPACE)
    storage = InMemoryStorage()
    live = optuna.create_study(direction="maximize", sampler=NSGAIISampler(population_size=10, seed=3),
                               storage=storage)
    study_id = storage.get_study_id_from_name(live.study_name)
    history = []
    for number in range(13):
        trial = live.ask(distributions)
        live.tell(trial, objective(trial.params))
        frozen = storage.get_all_trials(study_id)[-1]
        attrs = dict(frozen.system_attrs)
        cached = storage.get_study_system_attrs(study_id).get(f"{PARENTS_KEY_PREFIX}{attrs[GENERATION_KEY]}")
        if cached is not None:  # in a fresh in-memory storage, trial ids are the trial numbers
            attrs[f"{PARENTS_KEY_PREFIX}{attrs[GENERATION_KEY]}"] = cached
        history.append(TrialRecord(number, trial.params, "complete", frozen.value, attrs))
    live.sampler = NSGAIISampler(population_size=10, seed=trial_seed(5, 13))
    expected = live.ask(distributions).params
    assert strategy("genetic", max_trials=40, random_state=5).ask(history, 13)[0] == expected


def test_pruned_trials_count_for_the_genetic_population_and_failed_ones_do_not():
    chosen = strategy("genetic", max_trials=40)
    history = run(chosen, 10)
    history[3] = TrialRecord(3, history[3].params, "pruned", -5.0, history[3].attrs)
    assert chosen.ask(history, 10)[1][GENERATION_KEY] == 1
    history[4] = TrialRecord(4, history[4].params, "failed", None, history[4].attrs)
    assert chosen.ask(history, 10)[1][GENERATION_KEY] == 0


def test_bayesian_asks_differ_once_a_running_trial_is_told_its_lie():
    chosen = strategy("bayesian", max_trials=20)
    history = run(chosen, 11)
    alone = chosen.ask(history, 11)[0]
    with_running = chosen.ask(history + [TrialRecord(12, alone, "running")], 11)[0]
    assert alone != with_running
    assert_inside_the_space(with_running)


def test_ask_time_per_strategy_at_fifty_stored_trials_is_reported(capsys):
    history = run(strategy("tpe", max_trials=60), 50)
    timings = {}
    for name in ALL:
        chosen = strategy(name, max_trials=60)
        started = time.perf_counter()
        chosen.ask(history, 50)
        timings[name] = (time.perf_counter() - started) * 1000
    with capsys.disabled():
        print("\nask time at 50 stored trials (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert timings["tpe"] < 200 and timings["genetic"] < 200 and timings["random"] < 200


class TestTheMedianRule:
    COMPLETED = [[0.90, 0.92, 0.91], [0.80, 0.82, 0.81], [0.85, 0.85, 0.85], [0.70, 0.72, 0.71], [0.95, 0.93, 0.94]]

    def test_a_trial_below_the_median_running_mean_is_pruned_when_maximizing(self):
        # running means over two folds: .91 .81 .85 .71 .94 -> median .85
        assert should_prune(self.COMPLETED, [0.80, 0.84], "maximize")
        assert not should_prune(self.COMPLETED, [0.86, 0.85], "maximize")
        assert not should_prune(self.COMPLETED, [0.85, 0.85], "maximize")  # equal to the median: kept

    def test_a_trial_above_the_median_running_mean_is_pruned_when_minimizing(self):
        assert should_prune(self.COMPLETED, [0.86, 0.85], "minimize")
        assert not should_prune(self.COMPLETED, [0.80, 0.84], "minimize")

    def test_nothing_is_pruned_before_enough_folds_or_completed_trials(self):
        assert not should_prune(self.COMPLETED, [0.10], "maximize")
        assert not should_prune(self.COMPLETED[:4], [0.10, 0.10], "maximize")
        assert should_prune(self.COMPLETED[:4], [0.10, 0.10], "maximize", min_trials=4)

    def test_only_completed_trials_that_ran_as_many_folds_are_compared(self):
        short = [[0.99, 0.99]] * 5
        assert not should_prune(short, [0.5, 0.5, 0.5], "maximize")
        assert should_prune(short, [0.5, 0.5], "maximize")

    def test_a_trial_whose_score_is_not_a_number_is_pruned(self):
        assert should_prune(self.COMPLETED, [0.9, float("nan")], "maximize")
        assert not should_prune(self.COMPLETED + [[float("nan")] * 3] * 3, [0.86, 0.85], "maximize")
