"""Build the scikit-learn (or imbalanced-learn) pipeline a spec and a set of parameters describe.

    preprocess (ColumnTransformer: numeric -> impute + scale, categorical -> impute + encode)
    -> samplers (imblearn, classification only) -> feature selection -> estimator

Every learned step sits inside the pipeline, so cross-validation refits it on each training fold
and never sees the fold's validation rows. Samplers only act in `fit` (imblearn's Pipeline skips them
in predict/score), so SMOTE and oversampling touch training-fold rows only, never validation or test
rows. SMOTE needs numbers, which is why it comes after the ColumnTransformer.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import Pipeline as ImbPipeline
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import (
    SelectKBest,
    VarianceThreshold,
    f_classif,
    f_regression,
    mutual_info_classif,
    mutual_info_regression,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler, StandardScaler

from services.training.data_checks import SMOTE_NEIGHBOURS
from services.training.estimators import resolve_estimator
from services.training.spec import TrainingSpec

# Keyed by the spec's option names; tests swap in recording subclasses to prove where steps are fitted.
SCALERS: dict[str, type] = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
SAMPLERS: dict[str, type] = {"smote": SMOTE, "random_oversampling": RandomOverSampler}
MISSING_CATEGORY = "__missing__"


def _numeric_steps(spec: TrainingSpec) -> Pipeline:
    pre = spec.preprocessing
    scaler = SCALERS[pre.scaling]() if pre.scaling != "none" else "passthrough"
    return Pipeline([("impute", SimpleImputer(strategy=pre.imputation.numeric, fill_value=0)), ("scale", scaler)])


def _categorical_steps(spec: TrainingSpec) -> Pipeline:
    pre = spec.preprocessing
    if pre.encoding == "onehot":
        # Dense output: samplers, selectors and every estimator accept it; categories unseen in
        # training encode as all zeros instead of failing at predict time.
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    imputer = SimpleImputer(strategy=pre.imputation.categorical, fill_value=MISSING_CATEGORY)
    return Pipeline([("impute", imputer), ("encode", encoder)])


def _preprocessor(spec: TrainingSpec, feature_kinds: dict[str, str]) -> ColumnTransformer:
    numeric = [name for name in spec.features if feature_kinds[name] == "numeric"]
    categorical = [name for name in spec.features if feature_kinds[name] == "categorical"]
    transformers = []
    if numeric:
        transformers.append(("numeric", _numeric_steps(spec), numeric))
    if categorical:
        transformers.append(("categorical", _categorical_steps(spec), categorical))
    return ColumnTransformer(transformers, remainder="drop")


def _selector(spec: TrainingSpec, feature_kinds: dict[str, str]) -> BaseEstimator | None:
    selection = spec.preprocessing.feature_selection
    if selection.method == "none":
        return None
    if selection.method == "variance":
        return VarianceThreshold()
    classification = spec.model_type == "classification"
    if selection.method == "mutual_info":
        # Mutual information adds seeded noise to continuous features; a fixed seed keeps trials reproducible.
        score = partial(mutual_info_classif if classification else mutual_info_regression,
                        random_state=spec.random_state)
    else:
        score = f_classif if classification else f_regression
    k: int | str = "all" if selection.k is None else selection.k
    widening = spec.preprocessing.encoding == "onehot" and "categorical" in feature_kinds.values()
    if k != "all" and not widening:
        # Without one-hot the width is known: cap k here. One-hot widths vary by fold; there
        # SelectKBest keeps every column when k exceeds them, which is the same cap.
        k = min(k, len(spec.features))
    return SelectKBest(score_func=score, k=k)


def build_pipeline(spec: TrainingSpec, params: dict[str, Any], feature_kinds: dict[str, str], *,
                   probability: bool = False) -> Pipeline:
    """The unfitted pipeline for `spec` with the estimator's `params` (the searched ones, over the spec's
    fixed hyperparameters).

    `probability` wraps an estimator without predict_proba (SVC) in sigmoid calibration, as
    scikit-learn 1.9 advises instead of SVC(probability=True); a deterministic 3-fold split.
    """
    family = resolve_estimator(spec.estimator, spec.model_type)
    steps: list[tuple[str, Any]] = [("preprocess", _preprocessor(spec, feature_kinds))]
    augmenting = spec.augmentation.enabled and spec.model_type == "classification"
    if augmenting:
        for method in spec.augmentation.methods:
            sampler = SAMPLERS[method]
            extra = {"k_neighbors": SMOTE_NEIGHBOURS} if method == "smote" else {}
            steps.append((method, sampler(random_state=spec.random_state, **extra)))
    selector = _selector(spec, feature_kinds)
    if selector is not None:
        steps.append(("select", selector))
    estimator = family.make(spec.estimator_params(params), spec.random_state, spec.early_stopping,
                            model_type=spec.model_type)
    if probability and not hasattr(estimator, "predict_proba"):
        estimator = CalibratedClassifierCV(estimator, method="sigmoid", cv=3, ensemble=False)
    steps.append(("estimator", estimator))
    return ImbPipeline(steps) if augmenting else Pipeline(steps)
