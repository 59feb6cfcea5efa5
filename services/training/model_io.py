"""Save trained pipelines with skops and load them back trusting a fixed list of types only.

skops (https://skops.readthedocs.io/en/stable/persistence.html) never unpickles: it rebuilds objects
from a JSON schema and loads only the types it is told to trust. skops trusts every scikit-learn
type by default; we narrow that further: every type named anywhere in the file must be one the
platform's pipelines contain (TRUSTED_TYPES), never the list the file names for itself.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import platform
import zipfile
from typing import Any

import skops.io as sio

# Every type a pipeline from pipeline.py can contain, for each estimator in estimators.py, as
# recorded by dumping them all (encodings, scalers, selectors, samplers, calibration, both model types).
TRUSTED_TYPES: frozenset[str] = frozenset({
    "builtins.NoneType", "builtins.bool", "builtins.dict", "builtins.float", "builtins.int", "builtins.list",
    "builtins.slice", "builtins.str", "builtins.tuple", "collections.OrderedDict", "functools.partial",
    "numpy.bool_", "numpy.dtype", "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64", "numpy.ndarray",
    "numpy.uint64", "numpy.random._generator.Generator", "numpy.random.mtrand.RandomState",
    "imblearn.over_sampling._random_over_sampler.RandomOverSampler", "imblearn.over_sampling._smote.base.SMOTE",
    "imblearn.pipeline.Pipeline",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError", "sklearn._loss.link.IdentityLink", "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.MultinomialLogit", "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss", "sklearn._loss.loss.HalfSquaredError",
    "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier", "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.feature_selection._mutual_info.mutual_info_classif",
    "sklearn.feature_selection._mutual_info.mutual_info_regression",
    "sklearn.feature_selection._univariate_selection.SelectKBest",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.linear_model._ridge.Ridge",
    # k-nearest neighbours picks its tree and distance from the data and the searched `p`.
    "sklearn.metrics._dist_metrics.EuclideanDistance64", "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neighbors._ball_tree.BallTree", "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._classification.KNeighborsClassifier", "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._unsupervised.NearestNeighbors",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.MinMaxScaler", "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder", "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._label.LabelBinarizer", "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.svm._classes.SVC", "sklearn.svm._classes.SVR",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
})


class UntrustedArtifact(ValueError):
    """The file is not a skops file, or names a type outside TRUSTED_TYPES; it is not loaded."""


def dumps(model: Any) -> bytes:
    """The model as compressed skops bytes."""
    return sio.dumps(model, compression=zipfile.ZIP_DEFLATED)


def _named_types(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        if "__module__" in node and "__class__" in node:
            found.add(f"{node['__module__']}.{node['__class__']}")
        for value in node.values():
            _named_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _named_types(value, found)
    return found


def file_types(data: bytes) -> set[str]:
    """Every type the skops file's schema names, at any depth."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UntrustedArtifact(f"not a skops file: {exc}") from exc
    return _named_types(schema, set())


def loads_trusted(data: bytes) -> Any:
    """Load skops bytes if every type in them is in TRUSTED_TYPES; UntrustedArtifact otherwise."""
    outside = sorted(file_types(data) - TRUSTED_TYPES)
    if outside:
        raise UntrustedArtifact("the model file contains types the platform does not load: " + ", ".join(outside))
    return sio.loads(data, trusted=sorted(TRUSTED_TYPES))


_DISTRIBUTIONS = {"sklearn": "scikit-learn", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas",
                  "imblearn": "imbalanced-learn", "skops": "skops", "optuna": "optuna", "skopt": "scikit-optimize"}


def library_versions() -> dict[str, str]:
    """Versions of the libraries a trained model depends on, for its lineage."""
    versions = {name: importlib.metadata.version(dist) for name, dist in _DISTRIBUTIONS.items()}
    versions["python"] = platform.python_version()
    return versions
