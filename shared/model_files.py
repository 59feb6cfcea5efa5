"""What a model file is, told from its bytes without loading it, and the one list of types the platform
loads from a skops file.

Both the registry (checking uploads) and the training service (saving what it trained) need these, and
services never import each other, so they live here.

skops (https://skops.readthedocs.io/en/stable/persistence.html) never unpickles: it rebuilds objects
from a JSON schema and loads only the types it is told to trust. skops trusts every scikit-learn
type by default; we narrow that further: every type named anywhere in the file must be one the
platform's pipelines contain (TRUSTED_TYPES), never the list the file names for itself.

Pickle (and joblib, which is pickle, often compressed) runs code while it loads, so it is recognised
by its bytes, never by a file's name: a pickle renamed `model.skops` is still a pickle.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import pickletools
import zipfile
import zlib
from typing import Any, BinaryIO, Callable

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


# Bytes read from the start of an artifact to tell a pickle: a pickle's first opcodes, or enough of a
# compressed container to decompress a pickle's first opcodes from.
HEAD_BYTES = 64 << 10
_DECOMPRESSED_HEAD = 4 << 10
# A skops schema is a few MiB for a large forest; a bigger declared size is a zip bomb, not a model.
MAX_SCHEMA_BYTES = 64 << 20
MAX_MEMBERS = 100_000
# Opcodes that import a callable by name: what makes loading a pickle run code.
_IMPORTING_OPCODES = frozenset({"GLOBAL", "INST"})


class UntrustedArtifact(ValueError):
    """The file is not a skops file, or names a type outside TRUSTED_TYPES; it is not loaded."""


def _dotted_names(arg: str) -> bool:
    return all(part.isidentifier() for name in arg.split(" ") for part in name.split("."))


def _is_pickle(head: bytes) -> bool:
    """Whether `head` starts a pickle: opcodes parsed from the first byte (pickletools reads them, nothing
    runs) that begin with a protocol 2-5 header, import a callable by a dotted name, or end in STOP
    (protocols 0 and 1 have no header, and their opcodes are printable: a text file fails one of these
    within a line or two)."""
    framed = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    try:
        for parsed, (opcode, arg, position) in enumerate(pickletools.genops(head), start=1):
            if opcode.name in _IMPORTING_OPCODES and _dotted_names(str(arg)):
                return True
            if framed and parsed >= 3:
                return True
            if opcode.name == "STOP":
                # A short text can spell opcodes by chance; a pickle also keeps its stack and memo straight.
                pickletools.dis(head[:position + 1], out=io.StringIO())
                return True
    except ValueError:  # not an opcode, the head ends inside one, or the stack does not add up
        pass
    return False


def _zlib_head(head: bytes) -> bytes:
    if len(head) < 2 or head[0] & 0x0F != 8 or (head[0] << 8 | head[1]) % 31:
        return b""
    return zlib.decompressobj().decompress(head, _DECOMPRESSED_HEAD)


def _gzip_head(head: bytes) -> bytes:
    return zlib.decompressobj(wbits=31).decompress(head, _DECOMPRESSED_HEAD) if head[:2] == b"\x1f\x8b" else b""


def _bz2_head(head: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(head, _DECOMPRESSED_HEAD) if head[:3] == b"BZh" else b""


def _lzma_head(head: bytes) -> bytes:
    # xz, or the legacy .lzma header (properties byte 0x5d, as joblib's "lzma" compressor writes).
    if not (head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"\x5d\x00\x00"):
        return b""
    return lzma.LZMADecompressor().decompress(head, _DECOMPRESSED_HEAD)


# The containers joblib.dump(compress=...) writes, each read only as far as its first bytes.
_CONTAINERS: tuple[Callable[[bytes], bytes], ...] = (_zlib_head, _gzip_head, _bz2_head, _lzma_head)


def pickle_format(head: bytes) -> str | None:
    """"pickle" for a pickle, "joblib" for a pickle in a compressed container, None for anything else."""
    if _is_pickle(head):
        return "pickle"
    for container in _CONTAINERS:
        try:
            inner = container(head)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
            continue
        if inner and _is_pickle(inner):
            return "joblib"
    return None


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


def _skeleton(archive: BinaryIO) -> bytes:
    """The archive's schema and the names of its members, each member empty: all that skops's check looks
    at. skops's own reader would otherwise read every array into memory, and a small upload can hold a
    highly compressed array (a zip bomb) or name one array a thousand times."""
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        if len(members) > MAX_MEMBERS:
            raise UntrustedArtifact(f"not a skops file: more than {MAX_MEMBERS} members")
        schema_info = zipped.getinfo("schema.json")
        if schema_info.file_size > MAX_SCHEMA_BYTES:
            raise UntrustedArtifact(f"not a skops file: its schema is larger than {MAX_SCHEMA_BYTES} bytes")
        schema = zipped.read(schema_info)
    skeleton = io.BytesIO()
    with zipfile.ZipFile(skeleton, "w") as copy:
        for member in members:
            copy.writestr(member.filename, schema if member.filename == "schema.json" else b"")
    return skeleton.getvalue()


def untrusted_types(archive: BinaryIO) -> list[str]:
    """Every type the skops archive names (in its schema, or as skops reports what it would not load by
    default) that is not in TRUSTED_TYPES; UntrustedArtifact when it is no skops archive. Reads the zip's
    directory and schema only: never extracts it, builds no object."""
    import skops.io as sio  # here, not at import: skops brings scikit-learn, which the web processes do without

    try:
        skeleton = _skeleton(archive)
        with zipfile.ZipFile(io.BytesIO(skeleton)) as zipped:
            named = _named_types(json.loads(zipped.read("schema.json")), set())
        # skops's own check covers what the schema walk cannot see (functions, methods, its node types).
        flagged = set(sio.get_untrusted_types(data=skeleton))
    except UntrustedArtifact:
        raise
    except Exception as exc:  # a zip or schema skops cannot read is not a skops file, whatever broke
        raise UntrustedArtifact(f"not a skops file: {exc}") from exc
    return sorted((flagged | named) - TRUSTED_TYPES)


def loads_trusted(data: bytes) -> Any:
    """Load skops bytes if every type in them is in TRUSTED_TYPES; UntrustedArtifact otherwise."""
    import skops.io as sio

    outside = untrusted_types(io.BytesIO(data))
    if outside:
        raise UntrustedArtifact("the model file contains types the platform does not load: " + ", ".join(outside))
    return sio.loads(data, trusted=sorted(TRUSTED_TYPES))
