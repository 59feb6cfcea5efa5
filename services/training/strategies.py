"""The HPO strategies behind one stateless ask: each call rebuilds the optimizer from the stored trials.

Nothing lives only in memory between asks, so a coordinator killed mid-job loses nothing: the next ask
reads the same trials and continues. An ask is deterministic in (history, number, random_state). The
optimizers themselves are in optimizers.py, imported on the first ask: they bring optuna,
scikit-optimize and scikit-learn, which an idle worker, beat's redispatch and the event consumers
that lock jobs never need.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_STRATEGY = "tpe"
# A stored trial as the strategies see it: the job's queued trials count as running (the table adds "queued").
TRIAL_STATES = ("running", "complete", "pruned", "failed", "cancelled")
RUNNING, COMPLETE, PRUNED, FAILED, CANCELLED = TRIAL_STATES


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
    from services.training.optimizers import STRATEGIES  # on the first ask: see the module docstring

    try:
        kind = STRATEGIES[spec.strategy]
    except KeyError:
        raise ValueError(f"Unknown strategy {spec.strategy!r}; choose one of {', '.join(STRATEGIES)}.") from None
    return kind(space=spec.search_space, max_trials=spec.max_trials, direction=spec.direction,
                random_state=spec.random_state)


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
