"""Trained pipelines saved with skops load back and predict identically; files with other types are refused."""

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from services.training.data import split
from services.training.evaluation import fit_final
from services.training.model_io import dumps, library_versions
from shared.model_files import UntrustedArtifact, loads_trusted, pickle_format, untrusted_types
from services.training.spec import Augmentation, FeatureSelection, Preprocessing, TrainingSpec


def with_category(loader, rows=160):
    frame = loader(as_frame=True).frame.sample(rows, random_state=1)
    frame["band"] = np.where(frame.iloc[:, 0] > frame.iloc[:, 0].median(), "high", "low")
    frame.loc[frame.index[::6], "band"] = None
    frame.iloc[::5, 1] = np.nan
    return frame


CASES = {
    "logistic-onehot-smote-mutual-info": (load_breast_cancer, dict(
        estimator="logistic_regression", augmentation=Augmentation(True, ("smote", "random_oversampling")),
        preprocessing=Preprocessing(feature_selection=FeatureSelection("mutual_info", 5)))),
    "hist-gradient-boosting-early-stopping": (load_breast_cancer, dict(
        estimator="hist_gradient_boosting", early_stopping=True, preprocessing=Preprocessing(encoding="ordinal"))),
    "multiclass-svm-calibrated-f-test": (load_wine, dict(
        estimator="svm", metric="roc_auc", preprocessing=Preprocessing("minmax", feature_selection=FeatureSelection("f_test", 4)))),
    "knn-manhattan-variance": (load_wine, dict(
        estimator="knn", params={"p": 1},
        preprocessing=Preprocessing("robust", feature_selection=FeatureSelection("variance")))),
    "gradient-boosting-regressor": (load_diabetes, dict(estimator="gradient_boosting", params={"n_estimators": 30},
                                                        model_type="regression", early_stopping=True)),
    "random-forest-regressor": (load_diabetes, dict(estimator="random_forest", params={"n_estimators": 10},
                                                    model_type="regression", preprocessing=Preprocessing("none"))),
    "mlp-regressor": (load_diabetes, dict(estimator="mlp", params={"learning_rate_init": 0.01},
                                          model_type="regression")),
}


def trained(loader, options):
    options = dict(options)
    params = options.pop("params", {})
    frame = with_category(loader)
    spec = TrainingSpec(**{"model_type": "classification", "features": tuple(c for c in frame if c != "target"),
                           "target": "target", "folds": 3, "random_state": 5, **options})
    data = split(frame, spec)
    return fit_final(spec, data, params).pipeline, data


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_a_trained_pipeline_round_trips_and_predicts_identically(case):
    model, data = trained(*CASES[case])
    blob = dumps(model)
    loaded = loads_trusted(blob)
    assert type(loaded) is type(model)
    assert np.array_equal(loaded.predict(data.X_test), model.predict(data.X_test))
    if hasattr(model, "predict_proba"):
        assert np.array_equal(loaded.predict_proba(data.X_test), model.predict_proba(data.X_test))
    assert untrusted_types(io.BytesIO(blob)) == []


def test_saved_models_are_compressed_skops_files():
    model, _ = trained(*CASES["random-forest-regressor"])
    blob = dumps(model)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert "schema.json" in archive.namelist()
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def test_a_file_with_a_type_outside_the_list_is_refused_even_if_skops_trusts_it():
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    foreign = sio.dumps(Pipeline([("scale", StandardScaler()), ("model", GaussianNB())]).fit(X, y))
    assert sio.get_untrusted_types(data=foreign) == []  # skops alone would load it
    with pytest.raises(UntrustedArtifact, match="sklearn.naive_bayes.GaussianNB"):
        loads_trusted(foreign)


def test_a_file_naming_an_arbitrary_callable_is_refused_before_anything_is_built():
    blob = dumps(Pipeline([("scale", StandardScaler())]).fit(np.eye(3)))
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__module__"], schema["__class__"] = "os", "system"
    members["schema.json"] = json.dumps(schema).encode()
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(UntrustedArtifact, match="os.system"):
        loads_trusted(tampered.getvalue())


def test_bytes_that_are_not_a_skops_file_are_refused():
    with pytest.raises(UntrustedArtifact, match="not a skops file"):
        loads_trusted(b"\x80\x04 a pickle, perhaps")


def test_library_versions_name_every_library_a_model_depends_on():
    versions = library_versions()
    assert set(versions) == {"sklearn", "numpy", "scipy", "pandas", "imblearn", "skops", "optuna", "skopt", "python"}
    assert versions["pandas"] == pd.__version__ and all(versions.values())


@pytest.mark.parametrize("data", [
    b"a,b,c\n1,2,3\n", b"cat,dog\nfoo\nbar\n", b"hello.", b'{"weights": [1, 2]}', b"\x08\x07onnx-ish protobuf",
    b"PK\x03\x04 a zip", bytes(range(256)), b"\x80\x02\x00\x00\x00\x00\x00\x00{\"a\": 1}",  # a safetensors header
])
def test_text_and_other_binary_formats_are_not_taken_for_pickle(data):
    assert pickle_format(io.BytesIO(data)) is None


def test_a_skops_file_whose_array_is_a_zip_bomb_is_checked_without_inflating_it():
    blob = dumps(Pipeline([("scale", StandardScaler())]).fit(np.eye(3)))
    bomb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for name in archive.namelist():
            if name.endswith(".npy"):
                with out.open(name, "w") as member:  # 256 MiB of zeros, a few hundred KiB compressed
                    for _ in range(256):
                        member.write(bytes(1 << 20))
            else:
                out.writestr(name, archive.read(name))
    tracemalloc.start()
    try:
        assert untrusted_types(io.BytesIO(bomb.getvalue())) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def _declaring(archive: bytes, name: str, size: int) -> bytes:
    """The zip with `name`'s uncompressed size rewritten to `size` in its local and central headers."""
    data = bytearray(archive)
    for signature, size_at, name_length_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        at = data.find(signature)
        while at != -1:
            length = int.from_bytes(data[at + name_length_at:at + name_length_at + 2], "little")
            if data[at + name_at:at + name_at + length] == name.encode():
                data[at + size_at:at + size_at + 4] = size.to_bytes(4, "little")
            at = data.find(signature, at + 4)
    return bytes(data)


def test_a_skops_schema_that_lies_about_its_size_is_refused_without_inflating_it():
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out, out.open("schema.json", "w") as member:
        for _ in range(512):  # 512 MiB of spaces, about half a MiB compressed
            member.write(b" " * (1 << 20))
    lying = _declaring(bomb.getvalue(), "schema.json", 100)
    tracemalloc.start()
    try:
        with pytest.raises(UntrustedArtifact):
            untrusted_types(io.BytesIO(lying))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20  # the schema limit (64 MiB) and its copy, never the whole half GiB
