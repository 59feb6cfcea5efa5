"""TrainingSpec: the frozen, JSON-serialisable description of one training, stored on the job row.

Everything the ML core needs to reproduce a training is here; nothing else (no ids, no paths).
`spec_errors` checks the rules that tie fields together (estimator vs model type, metric vs model
type, augmentation only for classification...) so the request validator can answer 422 per field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from services.training.estimators import resolve_estimator
from services.training.metrics import METRICS, default_metric

MODEL_TYPES = ("classification", "regression")
SCALINGS = ("standard", "minmax", "robust", "none")
ENCODINGS = ("onehot", "ordinal")
NUMERIC_IMPUTATIONS = ("mean", "median", "most_frequent", "constant")
CATEGORICAL_IMPUTATIONS = ("most_frequent", "constant")
SELECTION_METHODS = ("mutual_info", "f_test", "variance", "none")
AUGMENTATION_METHODS = ("smote", "random_oversampling")
DIRECTIONS = ("maximize", "minimize")
STRATEGIES = ("grid", "random", "tpe", "bayesian", "genetic")


@dataclass(frozen=True)
class Imputation:
    numeric: str = "median"
    categorical: str = "most_frequent"


@dataclass(frozen=True)
class FeatureSelection:
    method: str = "none"
    # Applies to mutual_info and f_test (SelectKBest); capped at the number of features a fold has.
    k: int | None = None


@dataclass(frozen=True)
class Preprocessing:
    scaling: str = "standard"
    encoding: str = "onehot"
    imputation: Imputation = field(default_factory=Imputation)
    feature_selection: FeatureSelection = field(default_factory=FeatureSelection)


@dataclass(frozen=True)
class Augmentation:
    enabled: bool = False
    # Applied in this order inside each training fold; SMOTE first leaves nothing for a later oversampler.
    methods: tuple[str, ...] = ("smote",)


@dataclass(frozen=True)
class TrainingSpec:
    model_type: str
    features: tuple[str, ...]
    target: str
    estimator: str
    validation_split: float = 0.1
    test_split: float = 0.2
    folds: int = 5
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    augmentation: Augmentation = field(default_factory=Augmentation)
    early_stopping: bool = False
    random_state: int = 0
    metric: str = ""
    direction: str = ""
    strategy: str = "tpe"
    max_trials: int = 20
    parallelism: int = 1
    # Normalised by search_space.parse_search_space; {} means the estimator's default space.
    search_space: dict[str, Any] = field(default_factory=dict)
    # The model's hyperparameters, checked by search_space.parse_fixed_params: the parameters of every
    # fit, except those the search space varies. A random_state here seeds the estimator; the training's
    # random_state still seeds the splits, folds, samplers and the search.
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def estimator_params(self, searched: dict[str, Any]) -> dict[str, Any]:
        """The estimator's parameters for one fit: the fixed hyperparameters, with `searched` over them."""
        return {**self.hyperparameters, **searched}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists), for the job row and Celery messages."""
        data = asdict(self)
        data["features"] = list(self.features)
        data["augmentation"]["methods"] = list(self.augmentation.methods)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        """The inverse of to_dict; missing optional keys take their defaults."""
        data = dict(data)
        pre = dict(data.pop("preprocessing", None) or {})
        preprocessing = Preprocessing(
            scaling=pre.get("scaling", Preprocessing.scaling),
            encoding=pre.get("encoding", Preprocessing.encoding),
            imputation=Imputation(**(pre.get("imputation") or {})),
            feature_selection=FeatureSelection(**(pre.get("feature_selection") or {})),
        )
        aug = dict(data.pop("augmentation", None) or {})
        if "methods" in aug:
            aug["methods"] = tuple(aug["methods"])
        return cls(
            **{**data, "features": tuple(data["features"])},
            preprocessing=preprocessing,
            augmentation=Augmentation(**aug),
        )


def augmentation_error(model_type: str, augmentation: Augmentation) -> str | None:
    """Why this augmentation cannot run for this model type, or None when it can."""
    if not augmentation.enabled:
        return None
    if model_type != "classification":
        return "augmentation (smote, random_oversampling) balances classes, so it applies to classification only"
    if not augmentation.methods:
        return "augmentation is enabled but no method is given; choose from " + ", ".join(AUGMENTATION_METHODS)
    unknown = [m for m in augmentation.methods if m not in AUGMENTATION_METHODS]
    if unknown:
        return f"unknown augmentation method(s) {', '.join(unknown)}; choose from " + ", ".join(AUGMENTATION_METHODS)
    return None


def _choice(errors: dict[str, list[str]], name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        errors.setdefault(name, []).append(f"must be one of {', '.join(allowed)}; got {value!r}")


def spec_errors(spec: TrainingSpec) -> dict[str, list[str]]:
    """Field errors of a spec, keyed by the spec's dotted field name; empty when the spec can train.

    Data-dependent checks (columns, class counts) live in data_checks.py and data.py; the search space
    in search_space.py.
    """
    errors: dict[str, list[str]] = {}
    _choice(errors, "model_type", spec.model_type, MODEL_TYPES)
    if spec.model_type not in MODEL_TYPES:
        return errors
    try:
        resolve_estimator(spec.estimator, spec.model_type)
    except ValueError as exc:
        errors["estimator"] = [str(exc)]
    if not spec.features:
        errors["features"] = ["at least one feature is needed"]
    if spec.target in spec.features:
        errors.setdefault("features", []).append(f"the target {spec.target!r} cannot also be a feature")
    for name in ("validation_split", "test_split"):
        if not 0 < getattr(spec, name) < 1:
            errors.setdefault(name, []).append("must be between 0 and 1 (exclusive)")
    if spec.validation_split + spec.test_split >= 0.9:
        errors.setdefault("test_split", []).append("validation_split + test_split must be below 0.9")
    if spec.folds < 2:
        errors["folds"] = ["cross-validation needs at least 2 folds"]
    pre = spec.preprocessing
    _choice(errors, "preprocessing.scaling", pre.scaling, SCALINGS)
    _choice(errors, "preprocessing.encoding", pre.encoding, ENCODINGS)
    _choice(errors, "preprocessing.imputation.numeric", pre.imputation.numeric, NUMERIC_IMPUTATIONS)
    _choice(errors, "preprocessing.imputation.categorical", pre.imputation.categorical, CATEGORICAL_IMPUTATIONS)
    _choice(errors, "preprocessing.feature_selection.method", pre.feature_selection.method, SELECTION_METHODS)
    k = pre.feature_selection.k
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        errors["preprocessing.feature_selection.k"] = ["must be a positive integer"]
    elif k is not None and pre.feature_selection.method not in ("mutual_info", "f_test"):
        errors["preprocessing.feature_selection.k"] = [
            "k applies to mutual_info and f_test; variance drops constant features and none keeps all"]
    problem = augmentation_error(spec.model_type, spec.augmentation)
    if problem:
        errors["augmentation"] = [problem]
    metric = METRICS.get(spec.metric or default_metric(spec.model_type))
    if metric is None or metric.model_type != spec.model_type:
        allowed = sorted(name for name, m in METRICS.items() if m.model_type == spec.model_type)
        errors["metric"] = [f"unknown metric for {spec.model_type}; choose from {', '.join(allowed)}"]
    elif spec.direction and spec.direction != metric.direction:
        errors["direction"] = [
            f"{metric.name} is {metric.direction}d; leave direction out or set it to {metric.direction}"]
    _choice(errors, "strategy", spec.strategy, STRATEGIES)
    if spec.max_trials < 1:
        errors["max_trials"] = ["at least one trial is needed"]
    if spec.parallelism < 1:
        errors["parallelism"] = ["at least one trial must run at a time"]
    return errors
