"""The estimators the platform trains, one name per family resolved by model type.

Each entry builds a scikit-learn estimator from search parameters and carries a default search
space in the request's JSON format (see search_space.py): {"param": {"type": "float"|"int", "low",
"high", "log"} | {"type": "categorical", "choices": [...]}}. Ranges follow the usual starting points
of the scikit-learn user guide for each family. Early stopping, where the family has its own
mechanism, holds out 10% of the fit rows and stops after 10 rounds without improvement.

The table is plain data until an estimator is built: each class is imported then, so the API can
check names and model types without carrying scikit-learn.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

VALIDATION_FRACTION = 0.1
PATIENCE = 10


def _float(low: float, high: float, log: bool = False) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, "log": log}


def _int(low: int, high: int, log: bool = False) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, "log": log}


def _categorical(*choices: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(choices)}


Maker = Callable[[dict[str, Any], int, bool], "BaseEstimator"]


@dataclass(frozen=True)
class EstimatorSpec:
    """One family: `make(params, random_state, early_stopping, model_type=...)` builds it."""

    name: str
    model_types: tuple[str, ...]
    builders: dict[str, Maker]
    default_spaces: dict[str, dict[str, dict[str, Any]]]

    def make(self, params: dict[str, Any], random_state: int, early_stopping: bool, *,
             model_type: str | None = None) -> BaseEstimator:
        """The estimator of `model_type` (default: the family's first) with `params` applied.

        A `random_state` among `params` (a model's own hyperparameter) seeds the estimator instead of
        the training's. (search_space.parse_fixed_params refuses it for an estimator without one.)
        """
        kind = model_type or self.model_types[0]
        params = dict(params)
        random_state = params.pop("random_state", random_state)
        return self.builders[kind](params, random_state, early_stopping)

    def default_space(self, model_type: str) -> dict[str, dict[str, Any]]:
        return self.default_spaces[model_type]


def _sklearn(path: str) -> type[BaseEstimator]:
    """The scikit-learn class at "module.Class"."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _logistic(params, random_state, early_stopping):
    return _sklearn("sklearn.linear_model.LogisticRegression")(max_iter=2000, random_state=random_state, **params)


def _ridge(params, random_state, early_stopping):
    return _sklearn("sklearn.linear_model.Ridge")(random_state=random_state, **params)


def _forest(path):
    def build(params, random_state, early_stopping):
        return _sklearn(path)(random_state=random_state, n_jobs=1, **params)
    return build


def _gradient_boosting(path):
    def build(params, random_state, early_stopping):
        stopping = {"n_iter_no_change": PATIENCE, "validation_fraction": VALIDATION_FRACTION} if early_stopping else {}
        return _sklearn(path)(random_state=random_state, **stopping, **params)
    return build


def _hist_gradient_boosting(path):
    def build(params, random_state, early_stopping):
        # Explicit either way: the default "auto" switches on above 10,000 rows, which would make
        # the same request behave differently on a bigger dataset.
        return _sklearn(path)(random_state=random_state, early_stopping=early_stopping, n_iter_no_change=PATIENCE,
                              validation_fraction=VALIDATION_FRACTION, **params)
    return build


def _svc(params, random_state, early_stopping):
    # No probability=True (deprecated in scikit-learn 1.9): pipeline.py calibrates when a metric
    # needs predict_proba; binary roc_auc ranks by decision_function.
    return _sklearn("sklearn.svm.SVC")(random_state=random_state, **params)


def _svr(params, random_state, early_stopping):
    return _sklearn("sklearn.svm.SVR")(**params)


def _knn(path):
    def build(params, random_state, early_stopping):
        return _sklearn(path)(**params)
    return build


def _mlp(path):
    def build(params, random_state, early_stopping):
        return _sklearn(path)(random_state=random_state, max_iter=300, early_stopping=early_stopping,
                              n_iter_no_change=PATIENCE, validation_fraction=VALIDATION_FRACTION, **params)
    return build


_LOGISTIC_SPACE = {"C": _float(1e-3, 1e3, log=True)}
_RIDGE_SPACE = {"alpha": _float(1e-3, 1e3, log=True)}
_FOREST_SPACE = {
    "n_estimators": _int(20, 300),
    "max_depth": _int(2, 20),
    "min_samples_leaf": _int(1, 10),
    "max_features": _float(0.1, 1.0),
}
_GB_SPACE = {
    "n_estimators": _int(50, 300),
    "learning_rate": _float(0.01, 0.3, log=True),
    "max_depth": _int(2, 6),
    "subsample": _float(0.5, 1.0),
}
_HGB_SPACE = {
    "max_iter": _int(50, 300),
    "learning_rate": _float(0.01, 0.3, log=True),
    "max_leaf_nodes": _int(8, 64, log=True),
    "min_samples_leaf": _int(5, 50),
    "l2_regularization": _float(1e-6, 10.0, log=True),
}
_SVM_SPACE = {"C": _float(1e-2, 1e3, log=True), "gamma": _float(1e-4, 1.0, log=True)}
_KNN_SPACE = {"n_neighbors": _int(1, 30), "weights": _categorical("uniform", "distance"), "p": _int(1, 2)}
_MLP_SPACE = {"alpha": _float(1e-6, 1e-1, log=True), "learning_rate_init": _float(1e-4, 1e-1, log=True)}

_CLF, _REG = "classification", "regression"


def _family(name, classifier, regressor, clf_space, reg_space=None) -> EstimatorSpec:
    builders, spaces = {}, {}
    if classifier is not None:
        builders[_CLF], spaces[_CLF] = classifier, clf_space
    if regressor is not None:
        builders[_REG], spaces[_REG] = regressor, reg_space if reg_space is not None else clf_space
    return EstimatorSpec(name, tuple(builders), builders, spaces)


ESTIMATORS: dict[str, EstimatorSpec] = {
    spec.name: spec
    for spec in (
        _family("logistic_regression", _logistic, None, _LOGISTIC_SPACE),
        _family("ridge", None, _ridge, None, _RIDGE_SPACE),
        # "linear": the regularised linear model of either type, for requests that do not care which.
        _family("linear", _logistic, _ridge, _LOGISTIC_SPACE, _RIDGE_SPACE),
        _family("random_forest", _forest("sklearn.ensemble.RandomForestClassifier"),
                _forest("sklearn.ensemble.RandomForestRegressor"), _FOREST_SPACE),
        _family("gradient_boosting", _gradient_boosting("sklearn.ensemble.GradientBoostingClassifier"),
                _gradient_boosting("sklearn.ensemble.GradientBoostingRegressor"), _GB_SPACE),
        _family("hist_gradient_boosting", _hist_gradient_boosting("sklearn.ensemble.HistGradientBoostingClassifier"),
                _hist_gradient_boosting("sklearn.ensemble.HistGradientBoostingRegressor"), _HGB_SPACE),
        _family("svm", _svc, _svr, _SVM_SPACE),
        _family("knn", _knn("sklearn.neighbors.KNeighborsClassifier"), _knn("sklearn.neighbors.KNeighborsRegressor"),
                _KNN_SPACE),
        _family("mlp", _mlp("sklearn.neural_network.MLPClassifier"), _mlp("sklearn.neural_network.MLPRegressor"),
                _MLP_SPACE),
    )
}


def resolve_estimator(name: str, model_type: str) -> EstimatorSpec:
    """The family called `name` if it trains `model_type`; ValueError naming what is allowed otherwise."""
    spec = ESTIMATORS.get(name)
    if spec is not None and model_type in spec.model_types:
        return spec
    allowed = sorted(n for n, s in ESTIMATORS.items() if model_type in s.model_types)
    if spec is not None:
        raise ValueError(f"{name} does not train {model_type} models; choose from {', '.join(allowed)}")
    raise ValueError(f"unknown estimator {name!r} for {model_type}; choose from {', '.join(allowed)}")
