"""Score parameters by k-fold cross-validation on the training part; fit and test the final model.

Metrics go through scikit-learn's scorers (sklearn.metrics.get_scorer / make_scorer). Error metrics
that scikit-learn negates so that greater is better (neg_root_mean_squared_error, neg_mean_absolute_error,
neg_log_loss) are reported as the positive error with direction "minimize". Binary precision, recall
and f1 are those of the positive class (encoded label 1); multiclass ones are macro averages; roc_auc
is binary or the one-vs-rest macro average (sklearn.metrics.roc_auc_score, multi_class="ovr").
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score, get_scorer, make_scorer, precision_score, recall_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from services.training.data import DataSplit
from services.training.pipeline import build_pipeline
from services.training.spec import TrainingSpec

# One OpenMP/BLAS thread per trial: trials run in parallel worker processes, and threads on top of
# them oversubscribe the cores (HistGradientBoosting measured 12x slower on a busy 2-core host).
ONE_THREAD = 1
TEST_METRICS = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
                "regression": ("rmse", "mae", "r2")}


@dataclass(frozen=True)
class Metric:
    """A named score: `binary`/`multiclass` are sklearn scorer names or scorers; `sign` -1 un-negates."""

    name: str
    model_type: str
    direction: str
    binary: Any
    multiclass: Any = None
    sign: int = 1
    # From this many classes on, the metric needs predict_proba (decision_function ranks binary only).
    probability_from: int | None = None

    def needs_probability(self, n_classes: int) -> bool:
        return self.probability_from is not None and n_classes >= self.probability_from

    def score(self, model: Pipeline, X: Any, y: np.ndarray, n_classes: int) -> float:
        """The metric of `model` on (X, y), with errors as positive numbers."""
        scorer = self.multiclass if n_classes > 2 and self.multiclass is not None else self.binary
        scorer = get_scorer(scorer) if isinstance(scorer, str) else scorer
        return float(self.sign * scorer(model, X, y))


def _averaged(func: Callable, average: str) -> Any:
    return make_scorer(func, average=average, zero_division=0)


_CLF, _REG = "classification", "regression"
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", _CLF, "maximize", "accuracy"),
    Metric("balanced_accuracy", _CLF, "maximize", "balanced_accuracy"),
    Metric("precision", _CLF, "maximize", _averaged(precision_score, "binary"), _averaged(precision_score, "macro")),
    Metric("recall", _CLF, "maximize", _averaged(recall_score, "binary"), _averaged(recall_score, "macro")),
    Metric("f1", _CLF, "maximize", _averaged(f1_score, "binary"), _averaged(f1_score, "macro")),
    Metric("roc_auc", _CLF, "maximize", "roc_auc", "roc_auc_ovr", probability_from=3),
    Metric("log_loss", _CLF, "minimize", "neg_log_loss", sign=-1, probability_from=2),
    Metric("rmse", _REG, "minimize", "neg_root_mean_squared_error", sign=-1),
    Metric("mae", _REG, "minimize", "neg_mean_absolute_error", sign=-1),
    Metric("r2", _REG, "maximize", "r2"),
)}


def default_metric(model_type: str) -> str:
    """The metric a request without one is optimised for."""
    return "accuracy" if model_type == _CLF else "r2"


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


def cv_splitter(spec: TrainingSpec) -> KFold | StratifiedKFold:
    """Shuffled k folds, stratified for classification, fixed by the spec's random_state."""
    kind = StratifiedKFold if spec.model_type == _CLF else KFold
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
    return FinalModel(final, test, validation, data.classes, dict(data.feature_kinds), len(data.y_fit),
                      len(data.y_test), time.perf_counter() - started, dict(params))
