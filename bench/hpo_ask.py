"""The optimizer's own cost: one `ask` of each strategy over a history of n stored trials.

The strategies are stateless: every ask rebuilds the optimizer from the stored trials and so also
performs the "tell" of all of them; this is the time the coordinator spends in `strategy.ask` each
time a trial finishes. The history is the strategy's own asks with a synthetic score (no model is
fitted), so only the optimizer is timed.
"""

from __future__ import annotations

import random
import statistics
import time

from bench.hpo_problems import PROBLEMS, problem_spec
from services.training.strategies import TrialRecord, make_strategy

STRATEGY_NAMES = ("grid", "random", "tpe", "bayesian", "genetic")
REPEATS = 3


def ask_seconds(dataset: str, strategy_name: str, trials: int) -> float:
    """Median seconds of the ask for trial number `trials - 1` given the `trials - 1` before it."""
    spec = problem_spec(PROBLEMS[dataset], strategy=strategy_name, max_trials=trials, seed=0)
    strategy = make_strategy(spec)
    last = min(trials, strategy.capacity) - 1
    scores = random.Random(0)
    history: list[TrialRecord] = []
    for number in range(last):
        params, attrs = strategy.ask(history, number)
        history.append(TrialRecord(number, params, "complete", scores.uniform(0.8, 1.0), attrs))
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        strategy.ask(history, last)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def report(dataset: str, budgets: list[int]) -> list[str]:
    """One line per strategy: the ask time in ms at each budget."""
    lines = [f"optimizer ask (rebuild + tell + ask) on {dataset}'s space, median of {REPEATS}, ms:",
             f"  {'strategy':<10}" + "".join(f"{f'at {b} trials':>14}" for b in budgets)]
    for name in STRATEGY_NAMES:
        cells = "".join(f"{ask_seconds(dataset, name, budget) * 1000:>14.1f}" for budget in budgets)
        lines.append(f"  {name:<10}{cells}")
    return lines
