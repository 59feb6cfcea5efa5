"""Quality: the best CV score each search method reaches within a trial budget.

Our five strategies are driven in process through their public ask/tell interface (make_strategy +
TrialRecord history, one trial at a time), beside two baselines written here without platform code:
plain random search (independent uniform / log-uniform draws) and plain Optuna (`study.optimize` with
its TPESampler). All seven score candidates with the same `evaluate_trial` on the same folds.

Budgets share work where that changes nothing: a method whose n-th ask does not depend on the budget
(everything but grid, whose sample of the grid is sized to the budget, and genetic, whose population
is) runs once at the largest budget, and a smaller budget's figure is the best of its first trials -
exactly what a separate run with that budget would have produced.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from bench.hpo_problems import PROBLEMS, problem_data, problem_spec
from services.training.evaluation import evaluate_trial
from services.training.strategies import TrialRecord, make_strategy

OURS = ("grid", "random", "tpe", "bayesian", "genetic")
BASELINES = ("plain_random", "plain_optuna_tpe")
METHODS = OURS + BASELINES
BUDGET_SIZED = ("grid", "genetic")


@dataclass(frozen=True)
class Unit:
    """One search: a method on a dataset with a seed, at one budget (or the largest, for prefix reuse)."""

    dataset: str
    method: str
    seed: int
    budget: int


@dataclass(frozen=True)
class UnitResult:
    unit: Unit
    scores: list[float]  # every trial's CV mean, in the order asked
    seconds: float


def units(datasets: Iterable[str], budgets: list[int], seeds: int, methods: Iterable[str]) -> list[Unit]:
    """The searches to run; the most expensive first so two processes finish together."""
    todo = []
    for dataset in datasets:
        for method in methods:
            for seed in range(seeds):
                for budget in (budgets if method in BUDGET_SIZED else [max(budgets)]):
                    todo.append(Unit(dataset, method, seed, budget))
    return sorted(todo, key=lambda u: -u.budget)


def _ours(unit: Unit) -> list[float]:
    spec = problem_spec(PROBLEMS[unit.dataset], strategy=unit.method, max_trials=unit.budget, seed=unit.seed)
    data = problem_data(spec, unit.dataset)
    strategy = make_strategy(spec)
    history: list[TrialRecord] = []
    for number in range(strategy.capacity):
        params, attrs = strategy.ask(history, number)
        outcome = evaluate_trial(spec, data, params)
        history.append(TrialRecord(number, params, "complete", outcome.mean, attrs))
    return [record.value for record in history]


def _plain_draw(rng: np.random.Generator, definition: dict[str, Any]) -> Any:
    kind, low, high = definition["type"], definition.get("low"), definition.get("high")
    if kind == "categorical":
        return definition["choices"][int(rng.integers(len(definition["choices"])))]
    if kind == "float":
        return float(math.exp(rng.uniform(math.log(low), math.log(high)))) if definition["log"] \
            else float(rng.uniform(low, high))
    if definition["log"]:
        return min(high, int(math.exp(rng.uniform(math.log(low), math.log(high + 1)))))
    return int(rng.integers(low, high + 1))


def _plain_random(unit: Unit) -> list[float]:
    spec = problem_spec(PROBLEMS[unit.dataset], strategy="random", max_trials=unit.budget, seed=unit.seed)
    data = problem_data(spec, unit.dataset)
    rng = np.random.default_rng(unit.seed)
    scores = []
    for _ in range(unit.budget):
        params = {name: _plain_draw(rng, d) for name, d in sorted(spec.search_space.items())}
        scores.append(evaluate_trial(spec, data, params).mean)
    return scores


def _suggest(trial: optuna.Trial, name: str, definition: dict[str, Any]) -> Any:
    if definition["type"] == "categorical":
        return trial.suggest_categorical(name, definition["choices"])
    suggest = trial.suggest_float if definition["type"] == "float" else trial.suggest_int
    return suggest(name, definition["low"], definition["high"], log=definition["log"])


def _plain_optuna(unit: Unit) -> list[float]:
    spec = problem_spec(PROBLEMS[unit.dataset], strategy="tpe", max_trials=unit.budget, seed=unit.seed)
    data = problem_data(spec, unit.dataset)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=unit.seed))
    study.optimize(lambda trial: evaluate_trial(
        spec, data, {name: _suggest(trial, name, d) for name, d in sorted(spec.search_space.items())}).mean,
        n_trials=unit.budget)
    return [trial.value for trial in study.trials]


def run_unit(unit: Unit) -> UnitResult:
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Optuna marks its newer sampler options experimental; the figures do not depend on them.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        run = {"plain_random": _plain_random, "plain_optuna_tpe": _plain_optuna}.get(unit.method, _ours)
        scores = run(unit)
    return UnitResult(unit, scores, time.perf_counter() - started)


def run_all(todo: list[Unit], processes: int, progress) -> list[UnitResult]:
    """Every unit, over `processes` worker processes (each trial already uses one BLAS/OpenMP thread)."""
    results = []
    with mp.get_context("fork").Pool(processes) as pool:
        for result in pool.imap_unordered(run_unit, todo):
            results.append(result)
            progress(result, len(results), len(todo))
    return results


def best_scores(results: list[UnitResult], budgets: list[int]) -> dict[tuple[str, int, str], list[float]]:
    """(dataset, budget, method) -> the best CV score of each seed, within that budget."""
    table: dict[tuple[str, int, str], list[float]] = {}
    for result in sorted(results, key=lambda r: r.unit.seed):
        unit = result.unit
        for budget in budgets:
            if unit.method in BUDGET_SIZED and budget != unit.budget:
                continue
            table.setdefault((unit.dataset, budget, unit.method), []).append(max(result.scores[:budget]))
    return table


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(table: dict[tuple[str, int, str], list[float]], datasets: list[str], budgets: list[int]) -> list[str]:
    """The table lines, then one target line per dataset at the largest budget."""
    lines = [f"{'dataset':<14}{'budget':>7}  " + "".join(f"{m:>19}" for m in METHODS)]
    for dataset in datasets:
        for budget in budgets:
            cells = []
            for method in METHODS:
                values = table.get((dataset, budget, method))
                cells.append(f"{'-':>19}" if not values else "{:>19}".format("%.4f +- %.4f" % mean_std(values)))
            lines.append(f"{dataset:<14}{budget:>7}  " + "".join(cells))
    top = max(budgets)
    lines.append("")
    # A difference smaller than a baseline's spread over seeds is no difference: both targets allow one std.
    lines.append(f"targets at {top} trials: mean within one std of plain Optuna TPE's, and not below plain random's "
                 "mean minus its std")
    for dataset in datasets:
        optuna_mean, optuna_std = mean_std(table[(dataset, top, "plain_optuna_tpe")])
        random_mean, random_std = mean_std(table[(dataset, top, "plain_random")])
        for method in ("bayesian", "tpe", "genetic"):
            mean, _ = mean_std(table[(dataset, top, method)])
            near = mean >= optuna_mean - optuna_std
            not_worse = mean >= random_mean - random_std
            verdict = "PASS" if near and not_worse else "FAIL"
            lines.append(f"  {dataset:<14}{method:<9} {mean:.5f}: optuna {optuna_mean:.5f} +- {optuna_std:.5f} "
                         f"({mean - optuna_mean:+.5f}), random {random_mean:.5f} +- {random_std:.5f} "
                         f"({mean - random_mean:+.5f}): {verdict}")
    return lines
