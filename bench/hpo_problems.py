"""The three HPO benchmark problems and the objective every method is scored with.

Each problem is one of scikit-learn's bundled datasets with an estimator, a metric and the estimator's
default search space, as a request without a `search_space` would get. The objective is the platform's
own `evaluate_trial` (5-fold CV on the training part of the platform's split), so our strategies, plain
random search and plain Optuna all score a candidate identically, on the same folds for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd
from sklearn import datasets

from services.training.data import DataSplit, split
from services.training.estimators import resolve_estimator
from services.training.search_space import parse_search_space
from services.training.spec import TrainingSpec


@dataclass(frozen=True)
class Problem:
    dataset: str
    estimator: str
    metric: str


PROBLEMS = {p.dataset: p for p in (
    Problem("breast_cancer", "gradient_boosting", "roc_auc"),
    Problem("digits", "svm", "accuracy"),
    Problem("wine", "random_forest", "accuracy"),
)}
FOLDS = 5


@cache
def bundled_frame(name: str) -> pd.DataFrame:
    """A bundled dataset as a frame with plain column names and a `target` column."""
    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame.copy()
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    return frame


def problem_spec(problem: Problem, *, strategy: str, max_trials: int, seed: int) -> TrainingSpec:
    """The spec a default request for this problem would store (default space, 5 folds, maximize)."""
    frame = bundled_frame(problem.dataset)
    space = parse_search_space(None, resolve_estimator(problem.estimator, "classification"), "classification")
    return TrainingSpec(model_type="classification", features=tuple(c for c in frame.columns if c != "target"),
                        target="target", estimator=problem.estimator, folds=FOLDS, metric=problem.metric,
                        direction="maximize", strategy=strategy, max_trials=max_trials, random_state=seed,
                        search_space=space)


def problem_data(spec: TrainingSpec, dataset: str) -> DataSplit:
    """The platform's train / validation / test split for this seed; CV runs on its training part."""
    return split(bundled_frame(dataset), spec)
