"""The metrics a training optimises and reports, as plain data the API validates requests against.

Scores go through scikit-learn's scorers (sklearn.metrics.get_scorer / make_scorer). Error metrics
that scikit-learn negates so that greater is better (neg_root_mean_squared_error, neg_mean_absolute_error,
neg_log_loss) are reported as the positive error with direction "minimize". Binary precision, recall
and f1 are those of the positive class (encoded label 1); multiclass ones are macro averages; roc_auc
is binary or the one-vs-rest macro average (sklearn.metrics.roc_auc_score, multi_class="ovr").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

# A scikit-learn scorer name, or (score function in sklearn.metrics, average) for one averaged that way.
ScorerName = str | tuple[str, str]


@dataclass(frozen=True)
class Metric:
    """A named score: `binary`/`multiclass` name its scorers; `sign` -1 un-negates."""

    name: str
    model_type: str
    direction: str
    binary: ScorerName
    multiclass: ScorerName | None = None
    sign: int = 1
    # From this many classes on, the metric needs predict_proba (decision_function ranks binary only).
    probability_from: int | None = None

    def needs_probability(self, n_classes: int) -> bool:
        return self.probability_from is not None and n_classes >= self.probability_from

    def score(self, model: Any, X: Any, y: Any, n_classes: int) -> float:
        """The metric of a fitted `model` on (X, y), with errors as positive numbers."""
        name = self.multiclass if n_classes > 2 and self.multiclass is not None else self.binary
        return float(self.sign * _scorer(name)(model, X, y))


@functools.cache
def _scorer(name: ScorerName) -> Callable[..., float]:
    # Imported on the first score, which happens in a worker: the web process reads this table to
    # validate requests and never scores, so it does not carry scikit-learn.
    from sklearn import metrics

    if isinstance(name, str):
        return metrics.get_scorer(name)
    function, average = name
    return metrics.make_scorer(getattr(metrics, function), average=average, zero_division=0)


_CLF, _REG = "classification", "regression"
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", _CLF, "maximize", "accuracy"),
    Metric("balanced_accuracy", _CLF, "maximize", "balanced_accuracy"),
    Metric("precision", _CLF, "maximize", ("precision_score", "binary"), ("precision_score", "macro")),
    Metric("recall", _CLF, "maximize", ("recall_score", "binary"), ("recall_score", "macro")),
    Metric("f1", _CLF, "maximize", ("f1_score", "binary"), ("f1_score", "macro")),
    Metric("roc_auc", _CLF, "maximize", "roc_auc", "roc_auc_ovr", probability_from=3),
    Metric("log_loss", _CLF, "minimize", "neg_log_loss", sign=-1, probability_from=2),
    Metric("rmse", _REG, "minimize", "neg_root_mean_squared_error", sign=-1),
    Metric("mae", _REG, "minimize", "neg_mean_absolute_error", sign=-1),
    Metric("r2", _REG, "maximize", "r2"),
)}


def default_metric(model_type: str) -> str:
    """The metric a request without one is optimised for."""
    return "accuracy" if model_type == _CLF else "r2"
