"""Score parameters by k-fold cross-validation on the training part; fit and test the final model.

The metrics themselves, and how each is scored, are in metrics.py.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from services.training.data import DataSplit
from services.training.importance import permutation_shares
from services.training.metrics import METRICS, Metric, default_metric
from services.training.pipeline import build_pipeline
from services.training.spec import TrainingSpec

# One OpenMP/BLAS thread per trial: trials run in parallel worker processes, and threads on top of
# them oversubscribe the cores (HistGradientBoosting measured 12x slower on a busy 2-core host).
ONE_THREAD = 1
TEST_METRICS = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
                "regression": ("rmse", "mae", "r2")}


def spec_metric(spec: TrainingSpec) -> Metric:
    return METRICS[spec.metric or default_metric(spec.model_type)]


class TrialCancelled(Exception):
    """The job was cancelled while the trial ran; raised between folds."""


@dataclass(frozen=True)
class TrialOutcome:
    fold_scores: list[float]
    mean: float
    std: float
    duration_s: float
    pruned: bool


@dataclass(frozen=True)
class FinalModel:
    pipeline: Pipeline
    test_metrics: dict[str, float | None]
    # Fitted on the training part only and scored on the validation part, before the refit.
    validation_metrics: dict[str, float | None]
    classes: list[Any] | None
    feature_kinds: dict[str, str]
    fit_rows: int
    test_rows: int
    duration_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    # Per input column, its share of the permutation importance on the test split (importance.py).
    feature_importances: dict[str, float] | None = None


def cv_splitter(spec: TrainingSpec) -> KFold | StratifiedKFold:
    """Shuffled k folds, stratified for classification, fixed by the spec's random_state."""
    kind = StratifiedKFold if spec.model_type == "classification" else KFold
    return kind(n_splits=spec.folds, shuffle=True, random_state=spec.random_state)


def _fit(pipeline: Pipeline, X: Any, y: np.ndarray) -> Pipeline:
    with warnings.catch_warnings():
        # SelectKBest with k above a fold's one-hot width keeps every column, which is the cap we
        # want (pipeline._selector); its warning about it is noise.
        warnings.filterwarnings("ignore", message=r"k=\d+ is greater than n_features", category=UserWarning)
        return pipeline.fit(X, y)


def _n_classes(data: DataSplit) -> int:
    return len(data.classes) if data.classes else 0


def evaluate_trial(spec: TrainingSpec, data: DataSplit, params: dict[str, Any], *,
                   prune: Callable[[list[float]], bool] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> TrialOutcome:
    """Cross-validate `params` on the training part, fold by fold.

    After each fold but the last, `prune(scores so far)` may stop the trial (outcome.pruned);
    `cancelled()` is checked before each fold and raises TrialCancelled. Fit errors propagate.
    """
    started = time.perf_counter()
    metric, n_classes = spec_metric(spec), _n_classes(data)
    template = build_pipeline(spec, params, data.feature_kinds, probability=metric.needs_probability(n_classes))
    scores: list[float] = []
    pruned = False
    with threadpool_limits(limits=ONE_THREAD):
        for train_rows, val_rows in cv_splitter(spec).split(data.X_train, data.y_train):
            if cancelled is not None and cancelled():
                raise TrialCancelled()
            model = _fit(clone(template), data.X_train.iloc[train_rows], data.y_train[train_rows])
            scores.append(metric.score(model, data.X_train.iloc[val_rows], data.y_train[val_rows], n_classes))
            if prune is not None and len(scores) < spec.folds and prune(list(scores)):
                pruned = True
                break
    return TrialOutcome(scores, float(np.mean(scores)), float(np.std(scores)), time.perf_counter() - started, pruned)


def score_model(model: Pipeline, X: Any, y: np.ndarray, *, model_type: str, n_classes: int) -> dict[str, float | None]:
    """The report metrics of a fitted model.

    roc_auc is None when a class is absent from y, or for more than two classes when the model has
    no predict_proba (an SVM searched for a metric that needs none).
    """
    metrics: dict[str, float | None] = {}
    ranks_all_classes = len(np.unique(y)) == n_classes and (n_classes == 2 or hasattr(model, "predict_proba"))
    for name in TEST_METRICS[model_type]:
        if name == "roc_auc" and not ranks_all_classes:
            metrics[name] = None
            continue
        metrics[name] = METRICS[name].score(model, X, y, n_classes)
    return metrics


def fit_final(spec: TrainingSpec, data: DataSplit, params: dict[str, Any]) -> FinalModel:
    """Validate `params` on the validation part, then refit on train + validation and score once on test."""
    started = time.perf_counter()
    n_classes = _n_classes(data)
    # Built exactly as the trials were, so the final model is the one cross-validation scored.
    template = build_pipeline(spec, params, data.feature_kinds,
                              probability=spec_metric(spec).needs_probability(n_classes))
    with threadpool_limits(limits=ONE_THREAD):
        on_train = _fit(clone(template), data.X_train, data.y_train)
        validation = score_model(on_train, data.X_val, data.y_val, model_type=spec.model_type, n_classes=n_classes)
        final = _fit(clone(template), data.X_fit, data.y_fit)
        test = score_model(final, data.X_test, data.y_test, model_type=spec.model_type, n_classes=n_classes)
        importances = permutation_shares(final, data.X_test, data.y_test, random_state=spec.random_state)
    return FinalModel(final, test, validation, data.classes, dict(data.feature_kinds), len(data.y_fit),
                      len(data.y_test), time.perf_counter() - started, dict(params), importances)
