"""The pipelines a spec builds: every estimator, every preprocessing option, the spec's own rules."""

import warnings

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import Pipeline as ImbPipeline
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler, StandardScaler

from services.training.data import split
from services.training.estimators import ESTIMATORS, resolve_estimator
from services.training.evaluation import evaluate_trial
from services.training.pipeline import build_pipeline
from services.training.spec import (
    Augmentation, FeatureSelection, Imputation, Preprocessing, TrainingSpec, augmentation_error, spec_errors,
)

# Small budgets so each of the 16 estimator fits stays well under a second.
FAST = {"random_forest": {"n_estimators": 10}, "gradient_boosting": {"n_estimators": 10},
        "hist_gradient_boosting": {"max_iter": 10}, "mlp": {"learning_rate_init": 0.01}}


def small(loader, rows=150):
    frame = loader(as_frame=True).frame.iloc[:, list(range(6)) + [-1]].sample(rows, random_state=0)
    frame["band"] = pd.cut(frame.iloc[:, 0], 3, labels=["low", "mid", "high"]).astype(str)
    frame.loc[frame.index[::7], "band"] = None
    frame.iloc[::9, 1] = np.nan
    return frame


def spec_for(frame, model_type="classification", **overrides) -> TrainingSpec:
    values = dict(model_type=model_type, features=tuple(c for c in frame.columns if c != "target"),
                  target="target", estimator="linear", folds=3, random_state=3)
    return TrainingSpec(**{**values, **overrides})


CLF, REG = small(load_breast_cancer), small(load_diabetes)
FAMILIES = [(name, model_type) for name, family in ESTIMATORS.items() for model_type in family.model_types]


@pytest.mark.parametrize(("name", "model_type"), FAMILIES, ids=[f"{n}-{t}" for n, t in FAMILIES])
def test_every_estimator_builds_fits_and_predicts_for_its_model_type(name, model_type):
    frame = CLF if model_type == "classification" else REG
    spec = spec_for(frame, model_type, estimator=name)
    data = split(frame, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence on 100 rows is not what this test is about
        model = build_pipeline(spec, FAST.get(name, {}), data.feature_kinds).fit(data.X_train, data.y_train)
    predictions = model.predict(data.X_test)
    assert len(predictions) == len(data.y_test)
    if model_type == "classification":
        assert set(predictions) <= {0, 1}


def test_an_estimator_that_does_not_fit_the_model_type_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="ridge does not train classification models; choose from .*logistic"):
        resolve_estimator("ridge", "classification")
    with pytest.raises(ValueError, match="unknown estimator 'xgb' for regression; choose from .*ridge"):
        resolve_estimator("xgb", "regression")


def test_one_family_name_resolves_to_the_classifier_or_the_regressor():
    forest = ESTIMATORS["random_forest"]
    assert type(forest.make({}, 1, False, model_type="classification")).__name__ == "RandomForestClassifier"
    assert type(forest.make({}, 1, False, model_type="regression")).__name__ == "RandomForestRegressor"
    assert forest.make({"max_depth": 4}, 1, False, model_type="regression").get_params()["max_depth"] == 4


def test_default_search_spaces_name_real_parameters_with_valid_ranges():
    for name, model_type in FAMILIES:
        family = ESTIMATORS[name]
        params = family.make({}, 0, False, model_type=model_type).get_params()
        for param, definition in family.default_space(model_type).items():
            assert param in params, (name, param)
            if definition["type"] == "categorical":
                assert definition["choices"]
            else:
                assert definition["low"] < definition["high"] and (not definition["log"] or definition["low"] > 0)


def test_early_stopping_switches_on_each_estimators_own_mechanism():
    def make(name, model_type="classification"):
        return ESTIMATORS[name].make({}, 0, True, model_type=model_type).get_params()
    assert make("hist_gradient_boosting")["early_stopping"] is True
    assert make("gradient_boosting")["n_iter_no_change"] == 10
    assert make("mlp", "regression")["early_stopping"] is True
    assert ESTIMATORS["gradient_boosting"].make({}, 0, False).get_params()["n_iter_no_change"] is None
    assert ESTIMATORS["hist_gradient_boosting"].make({}, 0, False).get_params()["early_stopping"] is False


def test_gradient_boosting_with_early_stopping_stops_before_its_budget():
    spec = spec_for(CLF, estimator="gradient_boosting", early_stopping=True)
    data = split(CLF, spec)
    model = build_pipeline(spec, {"n_estimators": 500}, data.feature_kinds).fit(data.X_train, data.y_train)
    assert model.named_steps["estimator"].n_estimators_ < 500


@pytest.mark.parametrize(("scaling", "scaler"), [("standard", StandardScaler), ("minmax", MinMaxScaler),
                                                 ("robust", RobustScaler), ("none", str)])
@pytest.mark.parametrize(("encoding", "encoder"), [("onehot", OneHotEncoder), ("ordinal", OrdinalEncoder)])
def test_each_scaling_and_encoding_is_the_step_it_names_and_the_pipeline_fits(scaling, scaler, encoding, encoder):
    spec = spec_for(CLF, preprocessing=Preprocessing(scaling=scaling, encoding=encoding))
    data = split(CLF, spec)
    model = build_pipeline(spec, {}, data.feature_kinds).fit(data.X_train, data.y_train)
    columns = model.named_steps["preprocess"].named_transformers_
    assert isinstance(columns["numeric"].named_steps["scale"], scaler)
    assert isinstance(columns["categorical"].named_steps["encode"], encoder)
    assert model.score(data.X_test, data.y_test) > 0.8


@pytest.mark.parametrize("numeric", ["mean", "median", "most_frequent", "constant"])
@pytest.mark.parametrize("categorical", ["most_frequent", "constant"])
def test_each_imputation_fills_missing_values_so_no_row_is_lost(numeric, categorical):
    spec = spec_for(CLF, preprocessing=Preprocessing(imputation=Imputation(numeric=numeric, categorical=categorical)))
    data = split(CLF, spec)
    assert data.X_test.isna().any().any()
    model = build_pipeline(spec, {}, data.feature_kinds).fit(data.X_train, data.y_train)
    assert len(model.predict(data.X_test)) == len(data.X_test)


def test_a_category_never_seen_in_training_is_predicted_not_refused():
    spec = spec_for(CLF)
    data = split(CLF, spec)
    model = build_pipeline(spec, {}, data.feature_kinds).fit(data.X_train, data.y_train)
    assert len(model.predict(data.X_test.assign(band="unheard of"))) == len(data.X_test)


@pytest.mark.parametrize("model_type", ["classification", "regression"])
@pytest.mark.parametrize("method", ["mutual_info", "f_test"])
def test_feature_selection_keeps_the_k_best_features(method, model_type):
    frame = CLF if model_type == "classification" else REG
    spec = spec_for(frame, model_type, preprocessing=Preprocessing(
        encoding="ordinal", feature_selection=FeatureSelection(method=method, k=3)))
    data = split(frame, spec)
    model = build_pipeline(spec, {}, data.feature_kinds).fit(data.X_train, data.y_train)
    assert model.named_steps["select"].get_support().sum() == 3


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("encoding", ["ordinal", "onehot"])
def test_a_k_above_the_number_of_features_keeps_them_all_without_a_warning(encoding):
    selection = FeatureSelection("f_test", 50)
    spec = spec_for(CLF, preprocessing=Preprocessing(encoding=encoding, feature_selection=selection))
    data = split(CLF, spec)
    pipeline = build_pipeline(spec, {}, data.feature_kinds)
    if encoding == "ordinal":
        assert pipeline.named_steps["select"].k == len(spec.features)
    # One-hot widths are only known per fold: the fit path keeps every column, silently.
    assert len(evaluate_trial(spec, data, {}).fold_scores) == 3


def test_variance_selection_drops_constant_features_only():
    frame = CLF.assign(constant=1.0)
    spec = spec_for(frame, preprocessing=Preprocessing(encoding="ordinal",
                                                       feature_selection=FeatureSelection("variance")))
    data = split(frame, spec)
    model = build_pipeline(spec, {}, data.feature_kinds).fit(data.X_train, data.y_train)
    assert isinstance(model.named_steps["select"], VarianceThreshold)
    assert model.named_steps["select"].get_support().sum() == len(spec.features) - 1


def test_augmentation_builds_an_imbalanced_learn_pipeline_with_samplers_after_preprocessing():
    spec = spec_for(CLF, augmentation=Augmentation(enabled=True, methods=("smote", "random_oversampling")),
                    preprocessing=Preprocessing(feature_selection=FeatureSelection("f_test", 4)))
    data = split(CLF, spec)
    pipeline = build_pipeline(spec, {}, data.feature_kinds)
    assert isinstance(pipeline, ImbPipeline)
    assert [name for name, _ in pipeline.steps] == ["preprocess", "smote", "random_oversampling", "select", "estimator"]
    assert isinstance(pipeline.named_steps["smote"], SMOTE)
    assert isinstance(pipeline.named_steps["random_oversampling"], RandomOverSampler)
    assert pipeline.fit(data.X_train, data.y_train).score(data.X_test, data.y_test) > 0.8
    assert type(build_pipeline(spec_for(CLF), {}, data.feature_kinds)) is Pipeline


def test_augmentation_is_refused_for_regression_by_the_spec_rules():
    augmentation = Augmentation(enabled=True, methods=("smote",))
    assert "classification only" in augmentation_error("regression", augmentation)
    assert augmentation_error("classification", augmentation) is None
    assert augmentation_error("regression", Augmentation(enabled=False)) is None
    errors = spec_errors(spec_for(REG, "regression", estimator="ridge", augmentation=augmentation))
    assert list(errors) == ["augmentation"]


def test_an_svm_asked_for_probabilities_is_calibrated_rather_than_deprecated():
    spec = spec_for(CLF, estimator="svm")
    data = split(CLF, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model = build_pipeline(spec, {}, data.feature_kinds, probability=True).fit(data.X_train, data.y_train)
    assert isinstance(model.named_steps["estimator"], CalibratedClassifierCV)
    assert model.predict_proba(data.X_test).shape == (len(data.y_test), 2)


def test_a_spec_round_trips_through_plain_json_types():
    import json
    spec = spec_for(CLF, preprocessing=Preprocessing("robust", "ordinal", Imputation("constant", "constant"),
                                                     FeatureSelection("mutual_info", 5)),
                    augmentation=Augmentation(True, ("random_oversampling",)), metric="f1", direction="maximize",
                    search_space={"C": {"type": "float", "low": 0.1, "high": 10.0, "log": True}},
                    hyperparameters={"C": 2.0, "random_state": 5})
    assert TrainingSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_models_hyperparameters_are_fixed_unless_searched_and_their_random_state_seeds_the_estimator():
    spec = spec_for(CLF, estimator="random_forest", random_state=3,
                    hyperparameters={"n_estimators": 12, "max_depth": 4, "random_state": 42})
    data = split(CLF, spec)
    forest = build_pipeline(spec, {"max_depth": 7}, data.feature_kinds).named_steps["estimator"]
    assert (forest.n_estimators, forest.max_depth, forest.random_state) == (12, 7, 42)
    unseeded = build_pipeline(spec_for(CLF, estimator="random_forest", random_state=3), {}, data.feature_kinds)
    assert unseeded.named_steps["estimator"].random_state == 3  # the training's, when the model names none


def test_spec_errors_name_each_field_that_cannot_train():
    spec = spec_for(REG, "regression", estimator="logistic_regression", folds=1, validation_split=0.5,
                    test_split=0.45, metric="roc_auc", strategy="annealing",
                    preprocessing=Preprocessing(scaling="log", feature_selection=FeatureSelection("variance", 3)))
    errors = spec_errors(spec)
    assert set(errors) == {"estimator", "folds", "test_split", "metric", "strategy", "preprocessing.scaling",
                           "preprocessing.feature_selection.k"}
    assert spec_errors(spec_for(CLF)) == {}
    assert spec_errors(spec_for(REG, "regression", metric="rmse", direction="maximize"))["direction"] == [
        "rmse is minimized; leave direction out or set it to minimize"]
