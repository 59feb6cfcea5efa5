"""Artifacts load for serving only through the trusted loader (pickle only where allowed), and answer
predictions in the labels the user trained on."""

import io
import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from services.training.data import split
from services.training.evaluation import fit_final
from services.training.model_io import dumps
from services.training.profile import profile_training_data
from services.training.spec import Augmentation, FeatureSelection, Imputation, Preprocessing, TrainingSpec
from shared.served_model import LoadedModel, UnloadableModel, feature_kinds, profile_classes, smoke_instances

CULTIVARS = {0: "barolo", 1: "grignolino", 2: "barbera"}


def wine_frame():
    frame = load_wine(as_frame=True).frame.iloc[:, list(range(5)) + [-1]]
    frame["target"] = frame["target"].map(CULTIVARS)
    frame["band"] = np.where(frame["alcohol"] > frame["alcohol"].median(), "strong", "light")
    frame.loc[frame.index[::6], "band"] = None
    frame.iloc[::5, 1] = np.nan
    return frame


def jsonb(value):
    """A JSON document as Postgres's jsonb gives it back: an object's keys sorted by length, then bytes."""
    if isinstance(value, dict):
        return {key: jsonb(value[key]) for key in sorted(value, key=lambda k: (len(k.encode()), k.encode()))}
    return value


def train(estimator="gradient_boosting", params=None, **options):
    frame = wine_frame()
    spec = TrainingSpec(model_type="classification", features=tuple(c for c in frame if c != "target"),
                        target="target", estimator=estimator, folds=3, random_state=2, **options)
    data = split(frame, spec)
    final = fit_final(spec, data, {"n_estimators": 20} if params is None else params)
    profile = profile_training_data(data.X_fit, data.y_fit, data.feature_kinds, classes=data.classes)
    return spec, data, final.pipeline, jsonb(json.loads(json.dumps(profile)))


@pytest.fixture(scope="module")
def trained():
    return train()


def rows_of(frame):
    return [{name: None if pd.isna(value) else value for name, value in record.items()}
            for record in json.loads(frame.to_json(orient="records"))]


def test_a_platform_trained_pipeline_predicts_its_original_labels(trained):
    spec, data, pipeline, profile = trained
    assert list(profile["target"]["frequencies"]) != data.classes  # jsonb lost the encoded order
    model = LoadedModel.load(dumps(pipeline), flavor="skops", features=list(spec.features), profile=profile,
                             allow_pickle=False)
    assert model.is_classifier and model.classes == ["barbera", "barolo", "grignolino"]
    assert model.kinds["band"] == "categorical" and model.kinds["alcohol"] == "numeric"
    assert model.nullable == {"band", "malic_acid"}
    predictions, probabilities = model.predict(rows_of(data.X_test))
    assert predictions == [data.classes[code] for code in pipeline.predict(data.X_test)]
    expected = pipeline.predict_proba(data.X_test)
    assert np.allclose([[row[label] for label in data.classes] for row in probabilities], expected)
    assert all(type(p) is str for p in predictions) and set(probabilities[0]) == set(data.classes)


@pytest.mark.parametrize("options", [
    dict(preprocessing=Preprocessing("robust", "ordinal", Imputation("median", "constant"))),
    dict(preprocessing=Preprocessing("minmax", "onehot", Imputation("constant", "most_frequent"),
                                     FeatureSelection("f_test", 4)),
         augmentation=Augmentation(True, ("random_oversampling",))),
    dict(preprocessing=Preprocessing("none", "onehot"), estimator="svm", params={}, metric="roc_auc"),
], ids=["robust-ordinal", "minmax-onehot-selected-oversampled", "calibrated-svm"])
def test_the_preprocessing_replayed_on_arrays_predicts_what_the_pipeline_does(options):
    spec, data, pipeline, profile = train(**options)
    model = LoadedModel.load(dumps(pipeline), flavor="skops", features=list(spec.features), profile=profile,
                             allow_pickle=False)
    assert model._plan is not None  # the fast path was taken, not scikit-learn's DataFrame path
    rows = rows_of(data.X_test) + [rows_of(data.X_test.iloc[[0]])[0] | {"band": 3, "malic_acid": None}]
    frame = pd.concat([data.X_test, data.X_test.iloc[[0]].assign(band="3", malic_acid=np.nan)])
    predictions, probabilities = model.predict(rows)
    assert predictions == [data.classes[code] for code in pipeline.predict(frame)]
    assert np.allclose([[row[label] for label in data.classes] for row in probabilities],
                       pipeline.predict_proba(frame), rtol=1e-12, atol=0)


def test_a_pipeline_step_not_replayed_keeps_scikit_learns_path():
    X, y = load_wine(return_X_y=True, as_frame=True)
    from sklearn.compose import ColumnTransformer
    pipeline = make_pipeline(ColumnTransformer([("numeric", MinMaxScaler(clip=True), list(X.columns))]),
                             LogisticRegression(max_iter=3000)).fit(X, y)
    model = LoadedModel.load(dumps(pipeline), flavor="skops", features=list(X.columns), profile=None,
                             allow_pickle=False)
    assert model._plan is None
    predictions, _ = model.predict(rows_of(X.iloc[:20]))
    assert predictions == pipeline.predict(X.iloc[:20]).tolist()


def test_one_row_with_missing_values_and_an_unseen_category_is_predicted(trained):
    spec, data, pipeline, profile = trained
    model = LoadedModel.load(dumps(pipeline), flavor="skops", features=list(spec.features), profile=profile,
                             allow_pickle=False)
    row = rows_of(data.X_test.iloc[[0]])[0] | {"band": "unheard of", "malic_acid": None}
    predictions, probabilities = model.predict([row])
    assert predictions[0] in data.classes and sum(probabilities[0].values()) == pytest.approx(1.0)


def test_smoke_instances_are_rows_like_the_training_data(trained):
    spec, data, pipeline, profile = trained
    kinds = feature_kinds(profile, list(spec.features))
    rows = smoke_instances(list(spec.features), kinds, profile, n=5)
    assert len(rows) == 5 and all(set(row) == set(spec.features) for row in rows)
    alcohol = data.X_fit["alcohol"]
    assert all(alcohol.min() <= row["alcohol"] <= alcohol.max() for row in rows)
    assert len({row["alcohol"] for row in rows}) > 1
    assert {row["band"] for row in rows} == {"strong", "light"}
    assert smoke_instances(["a", "b"], {"a": "numeric", "b": "numeric"}, None, n=2) == [{"a": 0.0, "b": 0.0}] * 2


def test_feature_kinds_come_from_the_profile_and_default_to_numeric(trained):
    _, _, _, profile = trained
    assert feature_kinds(profile, ["band", "alcohol", "absent"]) == {
        "band": "categorical", "alcohol": "numeric", "absent": "numeric"}
    assert feature_kinds(None, ["x"]) == {"x": "numeric"}


@pytest.mark.parametrize(("labels", "classes"), [
    (["10", "9", "-1"], [-1, 9, 10]), (["2.5", "0.5"], [0.5, 2.5]), (["True", "False"], [False, True]),
    (["b", "10", "a"], ["10", "a", "b"]), (["01", "1"], ["01", "1"])])
def test_profile_classes_rebuild_the_encoded_order_and_the_labels_types(labels, classes):
    profile = {"target": {"kind": "categorical", "frequencies": {label: 1 for label in labels}}}
    assert profile_classes(profile) == classes
    assert profile_classes({"target": {"kind": "numeric"}}) is None and profile_classes(None) is None


def uploaded_classifier():
    X, y = load_wine(return_X_y=True)
    labels = np.array(["barolo", "grignolino", "barbera"])[y]
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels), X


def test_a_pickle_is_refused_unless_pickle_is_allowed():
    estimator, X = uploaded_classifier()
    features = [f"f{i}" for i in range(X.shape[1])]
    for blob in (pickle.dumps(estimator), joblib_bytes(estimator)):
        with pytest.raises(UnloadableModel, match="runs code when it is loaded"):
            LoadedModel.load(blob, flavor="skops", features=features, profile=None, allow_pickle=False)
        model = LoadedModel.load(blob, flavor="joblib", features=features, profile=None, allow_pickle=True)
        predictions, probabilities = model.predict([dict(zip(features, X[0].tolist()))])
        assert predictions == estimator.predict(X[:1]).tolist()
        assert set(probabilities[0]) == {"barbera", "barolo", "grignolino"}
        assert model.kinds == dict.fromkeys(features, "numeric") and model.nullable == frozenset()


def joblib_bytes(estimator):
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return buffer.getvalue()


def test_an_uploaded_regressor_answers_floats_and_no_probabilities():
    X, y = load_diabetes(return_X_y=True)
    estimator = Ridge().fit(X, y)
    features = [f"f{i}" for i in range(X.shape[1])]
    model = LoadedModel.load(dumps(estimator), flavor="skops", features=features, profile=None, allow_pickle=False)
    assert not model.is_classifier and model.classes is None
    predictions, probabilities = model.predict([dict(zip(features, row)) for row in X[:3].tolist()])
    assert predictions == pytest.approx(estimator.predict(X[:3]).tolist()) and probabilities is None
    assert all(type(p) is float for p in predictions)


@pytest.mark.parametrize(("blob", "reason"), [
    (b"this is not a model at all", "not a model file the platform can load safely"),
    (b"PK\x03\x04 truncated zip", "not a model file the platform can load safely"),
    (dumps(StandardScaler().fit([[1.0], [2.0]])), "StandardScaler, which has no predict method"),
])
def test_what_cannot_serve_is_unloadable_with_the_reason(blob, reason):
    with pytest.raises(UnloadableModel, match=reason):
        LoadedModel.load(blob, flavor="skops", features=["x"], profile=None, allow_pickle=True)


def test_a_model_whose_features_are_not_the_versions_is_unloadable(trained):
    spec, _, pipeline, profile = trained
    with pytest.raises(UnloadableModel, match="the model was fitted on the features"):
        LoadedModel.load(dumps(pipeline), flavor="skops", features=[*spec.features[:-1], "other"], profile=profile,
                         allow_pickle=False)
    estimator, _ = uploaded_classifier()
    with pytest.raises(UnloadableModel, match="takes 13 features, but the version lists 2"):
        LoadedModel.load(dumps(estimator), flavor="skops", features=["a", "b"], profile=None, allow_pickle=False)
