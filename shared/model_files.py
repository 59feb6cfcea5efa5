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
import gzip
import io
import json
import lzma
import pickletools
import zipfile
import zlib
from typing import Any, BinaryIO

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


# How far bytes that keep parsing as pickle opcodes are followed. Stopping there decides nothing in the
# uploader's favour: bytes still valid opcodes at this point are taken for a pickle, so padding a payload
# with harmless opcodes cannot push it out of sight.
SCAN_BYTES = 1 << 20
# All the zip members of one archive scanned together, past which the archive is taken for a pickle.
ZIP_SCAN_BYTES = 16 << 20
# A skops schema is a few MiB for a large forest; a bigger one is a zip bomb, not a model.
MAX_SCHEMA_BYTES = 64 << 20
MAX_MEMBERS = 100_000
# Opcodes that fetch a callable by name or registry code: what makes loading a pickle run code.
_IMPORTING_OPCODES = frozenset({"GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"})
ZIP_MAGIC = b"PK\x03\x04"


class UntrustedArtifact(ValueError):
    """The file is not a skops file, or names a type outside TRUSTED_TYPES; it is not loaded."""


def _dotted_names(arg: str) -> bool:
    return all(part.isidentifier() for name in arg.split(" ") for part in name.split("."))


class _Scanned:
    """A stream read through for pickletools, at most `limit` bytes, keeping what it read (<= limit)."""

    def __init__(self, stream: BinaryIO, limit: int):
        self._stream, self.left, self.seen = stream, limit, bytearray()

    def tell(self) -> int:
        return len(self.seen)

    def read(self, size: int = -1) -> bytes:
        return self._took(self._stream.read(self.left if size < 0 else min(size, self.left)) if self.left else b"")

    def readline(self) -> bytes:
        return self._took(self._stream.readline(self.left) if self.left else b"")

    def _took(self, data: bytes) -> bytes:
        self.left -= len(data)
        self.seen += data
        return data


def _is_pickle(stream: BinaryIO, limit: int = SCAN_BYTES) -> bool:
    """Whether the bytes parse as a pickle from the first byte (pickletools reads the opcodes; nothing
    runs): they fetch a callable (GLOBAL or INST by a dotted name, STACK_GLOBAL after the two strings it
    needs, EXT*), begin with a protocol 2-5 header, end in a STOP that keeps the stack and memo straight,
    or are still valid opcodes `limit` bytes in. Text fails within a line or two, binary formats at once."""
    scanned = _Scanned(stream, limit)
    framed = False
    try:
        for parsed, (opcode, arg, position) in enumerate(pickletools.genops(scanned), start=1):
            if parsed == 1:
                framed = opcode.name == "PROTO" and 2 <= arg <= 5
            if opcode.name in _IMPORTING_OPCODES:
                by_name = opcode.name in ("GLOBAL", "INST")
                if (by_name and _dotted_names(str(arg))) or (opcode.name == "STACK_GLOBAL" and parsed >= 3) or (
                        opcode.name.startswith("EXT")):
                    return True
            if framed and parsed >= 3:
                return True
            if opcode.name == "STOP":
                # A short text can spell opcodes by chance; a pickle also keeps its stack and memo straight.
                pickletools.dis(bytes(scanned.seen[:position + 1]), out=io.StringIO())
                return True
    except ValueError:  # not an opcode, an opcode cut short, the stack does not add up, or the limit hit
        return scanned.left == 0
    return False


class _ZlibReader:
    """A raw zlib stream (joblib's zlib compressor) decompressed as it is read."""

    def __init__(self, stream: BinaryIO):
        self._stream, self._inflate, self._out = stream, zlib.decompressobj(), b""

    def _fill(self, wanted: int) -> None:
        while len(self._out) < wanted and not self._inflate.eof:
            # Input held back by the last call's output cap first, then more from the stream.
            pending = self._inflate.unconsumed_tail or self._stream.read(64 << 10)
            if not pending:
                break
            self._out += self._inflate.decompress(pending, wanted - len(self._out))

    def read(self, size: int = -1) -> bytes:
        self._fill(size if size >= 0 else SCAN_BYTES)
        data, self._out = (self._out, b"") if size < 0 else (self._out[:size], self._out[size:])
        return data

    def readline(self, limit: int = -1) -> bytes:
        self._fill(limit if limit >= 0 else SCAN_BYTES)
        end = self._out.find(b"\n")
        cut = len(self._out) if end < 0 else end + 1
        cut = cut if limit < 0 else min(cut, limit)
        data, self._out = self._out[:cut], self._out[cut:]
        return data


def _decompressed(stream: BinaryIO, magic: bytes) -> BinaryIO | None:
    """The container joblib.dump(compress=...) writes, opened to read its content; None for another file."""
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)
    if magic[:3] == b"BZh":
        return bz2.BZ2File(stream)
    # xz, or the legacy .lzma header (properties byte 0x5d, as joblib's "lzma" compressor writes).
    if magic[:6] == b"\xfd7zXZ\x00" or magic[:3] == b"\x5d\x00\x00":
        return lzma.LZMAFile(stream)
    if len(magic) >= 2 and magic[0] & 0x0F == 8 and not (magic[0] << 8 | magic[1]) % 31:
        return _ZlibReader(stream)
    return None


def zip_holds_pickle(stream: BinaryIO) -> bool:
    """Whether a zip (not a trusted skops file) holds a pickle among its members, as PyTorch's `.pt` does."""
    budget = ZIP_SCAN_BYTES
    try:
        with zipfile.ZipFile(stream) as zipped:
            for member in zipped.infolist()[:MAX_MEMBERS]:
                with zipped.open(member) as content:
                    if _is_pickle(content, min(SCAN_BYTES, budget)):
                        return True
                budget -= min(member.file_size, SCAN_BYTES)
                if budget <= 0:
                    return True  # too much that might be pickle to look through: refused, not waved on
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError):
        return False
    return False


def pickle_format(stream: BinaryIO) -> str | None:
    """"pickle" for a pickle, "joblib" for a pickle in a compressed container, None for anything else
    (a zip holding a pickle: `zip_holds_pickle`). `stream` is seekable; it is read, never loaded."""
    if _is_pickle(stream):
        return "pickle"
    stream.seek(0)
    container = _decompressed(stream, stream.read(6))
    stream.seek(0)
    if container is not None:
        try:
            return "joblib" if _is_pickle(container) else None
        except (zlib.error, OSError, EOFError, lzma.LZMAError):
            return None
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
        # Read up to the limit whatever size the directory declares: a lying size is how a zip bomb passes.
        with zipped.open("schema.json") as member:
            schema = member.read(MAX_SCHEMA_BYTES + 1)
        if len(schema) > MAX_SCHEMA_BYTES:
            raise UntrustedArtifact(f"not a skops file: its schema is larger than {MAX_SCHEMA_BYTES} bytes")
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
