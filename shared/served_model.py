"""A model version loaded to answer predictions: from artifact bytes to JSON-ready predictions.

The deployment worker's health check and the serving replicas both load models, and services never
import each other, so this lives in shared/.

What a platform-trained model expects and answers (services/training: data.py, pipeline.py, profile.py):
- a pandas DataFrame with the training columns: numbers as floats with NaN for missing, categories as
  plain objects with NaN for missing (the pipeline's imputers fill both);
- classification targets are label-encoded, so the model predicts 0..k-1; label i is the i-th class in
  sorted order (numpy.unique), and the training profile's target lists the classes as strings.
An uploaded model has no profile: every feature is numeric and its own `classes_` are the labels.

numpy, pandas and scikit-learn are imported when a model is loaded, not with this module: a process
that only builds smoke rows or feature kinds does not carry them.
"""

from __future__ import annotations

import io
import math
from operator import itemgetter
from typing import Any, Callable

from shared.model_files import ZIP_MAGIC, loads_trusted, pickle_format

NUMERIC, CATEGORICAL = "numeric", "categorical"
# The column of a version's reference sample (its training features) that holds the model's prediction
# of each row: the reference of prediction drift.
REFERENCE_PREDICTION = "__prediction__"
# The profile's name for the categories past its top 50 (services/training/profile.py): never a real value.
OTHER_CATEGORIES = "__other__"


class UnloadableModel(Exception):
    """The artifact cannot be served; str(exc) says why, for the person who deployed it."""


def feature_kinds(profile: dict | None, features: list[str]) -> dict[str, str]:
    """"numeric" or "categorical" per feature as the training profile records it; numeric without one."""
    recorded = (profile or {}).get("features") or {}
    return {name: CATEGORICAL if (recorded.get(name) or {}).get("kind") == CATEGORICAL else NUMERIC
            for name in features}


def nullable_features(profile: dict | None, features: list[str]) -> frozenset[str]:
    """Features that had missing values in training: the model's imputers were fitted, and its scores
    measured, with them missing, so a missing value is an input it knows. Without a profile, none."""
    recorded = (profile or {}).get("features") or {}
    return frozenset(name for name in features if ((recorded.get(name) or {}).get("null_share") or 0) > 0)


def _spread(values: list[Any], row: int, n: int) -> Any:
    """The value at the row-th of n evenly spaced positions through `values` (low to high)."""
    return values[round(row * (len(values) - 1) / (n - 1)) if n > 1 else len(values) // 2]


def smoke_instances(features: list[str], kinds: dict[str, str], profile: dict | None, n: int = 5) -> list[dict]:
    """`n` rows like the training data, for health checks: numbers stepping through the recorded decile
    edges (so within the training range), categories cycling through the recorded ones, most common
    first. A feature never present in training is None (its imputer fills it); without a profile, zeros."""
    recorded = (profile or {}).get("features") or {}
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name in features:
        summary = recorded.get(name) or {}
        if profile is None:
            values: list[Any] = [0.0]
        elif kinds.get(name) == CATEGORICAL:
            frequencies = summary.get("frequencies") or {}
            values = sorted((c for c in frequencies if c != OTHER_CATEGORIES), key=lambda c: -frequencies[c])
        else:
            values = [float(edge) for edge in summary.get("bin_edges") or ()]
        for index, row in enumerate(rows):
            if not values:
                row[name] = None
            elif kinds.get(name) == CATEGORICAL:
                row[name] = values[index % len(values)]
            else:
                row[name] = _spread(values, index, n)
    return rows


def _parsed_labels(keys: list[str], parse: Callable[[str], Any]) -> list[Any] | None:
    try:
        labels = [parse(key) for key in keys]
    except (ValueError, KeyError):
        return None
    # Only a parse that gives each key back exactly (not int("1_0"), not float("01")) is the label's type.
    return labels if [str(label) for label in labels] == keys else None


def profile_classes(profile: dict | None) -> list[Any] | None:
    """The classification target's labels in the order training encoded them (label i is code i); None
    for a regression target or no profile.

    The profile keeps each class as str(label). Its key order cannot be trusted (Postgres's jsonb
    reorders an object's keys), so the order is rebuilt as training made it: numpy.unique's sorted
    order, over labels given back their type (bool, int or float, as pandas read them; else str).
    """
    target = (profile or {}).get("target") or {}
    if target.get("kind") != CATEGORICAL:
        return None
    keys = [str(key) for key in target.get("frequencies") or {}]
    for parse in ({"False": False, "True": True}.__getitem__, int, float):
        labels = _parsed_labels(keys, parse)
        if labels is not None:
            return sorted(labels)
    return sorted(keys)


def _plain(value: Any) -> Any:
    """A JSON-ready Python scalar: numpy scalars have .item()."""
    return value.item() if hasattr(value, "item") else value


def _deserialized(data: bytes, *, flavor: str, allow_pickle: bool) -> Any:
    # The bytes decide how they are read, never the flavor an uploader declared: a pickle calling itself
    # skops is still a pickle, and skops bytes go through the trusted loader whatever they are called.
    # A zip (skops) goes to the trusted loader, which never unpickles: no need to scan it as opcodes.
    pickled = None if data.startswith(ZIP_MAGIC) else pickle_format(io.BytesIO(data))
    if pickled:
        if not allow_pickle:
            raise UnloadableModel(
                f"the artifact is a {pickled} file, which runs code when it is loaded; this platform loads "
                "pickle and joblib files only where allow_pickle is set. Save the model with skops.")
        import joblib  # scikit-learn's own dependency; it reads plain and compressed pickles alike

        try:
            return joblib.load(io.BytesIO(data))
        except Exception as exc:  # whatever the pickle raises while it runs, the version cannot be served
            raise UnloadableModel(f"the {pickled} file did not load: {exc}") from exc
    try:
        return loads_trusted(data)
    except Exception as exc:  # untrusted types, not a zip, a skops version it cannot read: all unservable
        declared = f" (flavor {flavor})" if flavor and flavor != "skops" else ""
        raise UnloadableModel(f"the artifact{declared} is not a model file the platform can load safely: {exc}") from exc


class LoadedModel:
    """A model ready to predict, with what its inputs and outputs are. Immutable once loaded, so one
    instance serves every thread of a replica."""

    features: list[str]
    kinds: dict[str, str]
    nullable: frozenset[str]
    is_classifier: bool
    classes: list[Any] | None

    @classmethod
    def load(cls, data: bytes, *, flavor: str, features: list[str], profile: dict | None,
             allow_pickle: bool) -> LoadedModel:
        """Load and check an artifact, then warm it up on a row built from its profile; UnloadableModel
        with the reason if any of it fails."""
        model = _deserialized(data, flavor=flavor, allow_pickle=allow_pickle)
        if not callable(getattr(model, "predict", None)):
            raise UnloadableModel(f"the artifact holds a {type(model).__name__}, which has no predict method")
        loaded = cls(model, features=list(features), profile=profile)
        try:
            loaded.predict(smoke_instances(loaded.features, loaded.kinds, profile, n=1))
        except Exception as exc:  # a model that cannot answer one typical row cannot serve
            raise UnloadableModel(f"the model failed to predict a row like its training data: {exc}") from exc
        return loaded

    def __init__(self, model: Any, *, features: list[str], profile: dict | None):
        from sklearn.base import is_classifier

        self._model = model
        self.features = features
        self.kinds = feature_kinds(profile, features)
        self.nullable = nullable_features(profile, features)
        self._columns = self._input_columns()
        import pandas as pd

        # Built once: turning a list of names into an Index costs more than the rest of a one-row frame.
        self._index = pd.Index(self._columns)
        self._frame = hasattr(model, "feature_names_in_") or CATEGORICAL in self.kinds.values()
        self._categorical = [self.kinds[name] == CATEGORICAL for name in self._columns]
        getter = itemgetter(*self._columns)
        # itemgetter of one name gives the value, not a 1-tuple; rows are tuples either way below.
        self._row: Callable[[dict], tuple] = getter if len(self._columns) > 1 else lambda row: (getter(row),)
        trained_classes = profile_classes(profile)
        model_classes = getattr(model, "classes_", None)
        self.is_classifier = trained_classes is not None or (model_classes is not None and is_classifier(model))
        self._encoded = trained_classes is not None
        if trained_classes is not None:
            codes = [_plain(code) for code in (model_classes if model_classes is not None else ())]
            if codes != list(range(len(trained_classes))):
                raise UnloadableModel(f"the training profile records {len(trained_classes)} classes, but the model "
                                      f"predicts {len(codes)} codes ({codes[:10]}); they do not belong together")
            self.classes = trained_classes
        else:
            self.classes = [_plain(label) for label in model_classes] if self.is_classifier else None
        self._probabilities = self.is_classifier and hasattr(model, "predict_proba")
        self._class_keys = [str(label) for label in self.classes or ()]
        compiled = self._replayed_preprocessing(profile)
        self._plan, self._predictor = compiled if compiled else (None, model)

    def _replayed_preprocessing(self, profile: dict | None) -> tuple[Any, Any] | None:
        """The pipeline's preprocessing replayed on arrays (served_preprocessing.py) and the steps after it,
        if it reproduces the ColumnTransformer's own output on rows like the training data, on missing
        values and on unseen categories; None to keep scikit-learn's path."""
        import numpy as np

        from shared.served_preprocessing import compile_preprocessing

        compiled = compile_preprocessing(self._model, self.kinds)
        if compiled is None:
            return None
        rows = smoke_instances(self.features, self.kinds, profile, n=5)
        rows.append({**rows[0], **dict.fromkeys(self.nullable)})
        rows.append({**rows[0], **{name: "never seen in training" for name in self.features
                                    if self.kinds[name] == CATEGORICAL}})
        try:
            expected = self._model[0].transform(self._inputs(rows))
            replayed = compiled[0].transform(rows)
        except Exception:  # the replay is an optimisation: anything it cannot do, scikit-learn does
            return None
        same = expected.shape == replayed.shape and np.allclose(expected, replayed, rtol=1e-12, atol=0, equal_nan=True)
        return compiled if same else None

    def _input_columns(self) -> list[str]:
        """The features in the order the model was fitted with, checked against the version's features."""
        named = getattr(self._model, "feature_names_in_", None)
        if named is not None:
            columns = [str(name) for name in named]
            if sorted(columns) != sorted(self.features):
                raise UnloadableModel(f"the model was fitted on the features {columns}, but the version lists "
                                      f"{self.features}")
            return columns  # scikit-learn refuses a frame whose columns come in another order than in fit
        width = getattr(self._model, "n_features_in_", None)
        if width is not None and width != len(self.features):
            raise UnloadableModel(f"the model takes {width} features, but the version lists {len(self.features)}")
        return self.features

    def _inputs(self, rows: list[dict[str, Any]]) -> Any:
        import numpy as np

        values = [self._row(row) for row in rows]
        if not self._frame:
            return np.array(values, dtype=float)  # None becomes NaN
        import pandas as pd

        from shared.served_preprocessing import category

        if not any(self._categorical):
            return pd.DataFrame(np.array(values, dtype=float), columns=self._index, copy=False)
        columns: dict[str, Any] = {}
        for name, categorical, column in zip(self._columns, self._categorical, zip(*values)):
            if categorical:
                columns[name] = np.array([category(value) for value in column], dtype=object)
            else:
                columns[name] = np.array(column, dtype=float)
        return pd.DataFrame(columns, copy=False)

    def predict(self, rows: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, float]] | None]:
        """Predictions for validated rows in the original label space, and for a classifier with
        predict_proba each row's probability per class (keyed by the label as a string); else None.

        A classifier's prediction is then its most probable class: scikit-learn's own rule for its
        probabilistic classifiers, one pass through the model instead of two, and never at odds with
        the probabilities it is answered with."""
        inputs = self._plan.transform(rows) if self._plan else self._inputs(rows)
        if self._probabilities:
            probabilities = self._predictor.predict_proba(inputs)
            labels = self.classes or []
            predictions = [labels[code] for code in probabilities.argmax(axis=1).tolist()]
            keys = self._class_keys
            return predictions, [dict(zip(keys, row)) for row in probabilities.tolist()]
        output = self._predictor.predict(inputs)
        if self._encoded:
            labels = self.classes or []
            return [labels[int(code)] for code in output.tolist()], None
        return _json_values(output), None


def _json_values(output: Any) -> list[Any]:
    """Predictions as JSON-ready values: numpy scalars become Python's, a non-finite number None."""
    values = output.tolist() if hasattr(output, "tolist") else list(output)
    return [None if isinstance(v, float) and not math.isfinite(v) else _plain(v) for v in values]
