"""Cross-validated trials and the final model: no leakage, the metrics users read, reproducibility."""

import numpy as np
import pytest
from imblearn.over_sampling import SMOTE
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, precision_score, r2_score, recall_score
from sklearn.metrics import roc_auc_score, root_mean_squared_error
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from services.training import pipeline as pipeline_module
from services.training.data import split
from services.training.evaluation import TrialCancelled, cv_splitter, evaluate_trial, fit_final
from services.training.metrics import METRICS
from services.training.pipeline import build_pipeline
from services.training.spec import Augmentation, FeatureSelection, Preprocessing, TrainingSpec

BREAST_CANCER = load_breast_cancer(as_frame=True).frame
DIABETES = load_diabetes(as_frame=True).frame
WINE = load_wine(as_frame=True).frame


def spec_for(frame, model_type="classification", **overrides) -> TrainingSpec:
    values = dict(model_type=model_type, features=tuple(c for c in frame.columns if c != "target"),
                  target="target", estimator="linear", folds=4, random_state=11)
    return TrainingSpec(**{**values, **overrides})


def rows_of(X) -> set[tuple]:
    return {tuple(row) for row in np.asarray(X, dtype=float).round(10)}


class RecordingScaler(StandardScaler):
    """StandardScaler that records the raw rows each fit saw."""

    fits: list[set[tuple]] = []

    def fit(self, X, y=None, sample_weight=None):
        RecordingScaler.fits.append(rows_of(X))
        return super().fit(X, y, sample_weight)


class RecordingSMOTE(SMOTE):
    """SMOTE that records how many rows each resampling saw."""

    calls: list[int] = []

    def fit_resample(self, X, y, **params):
        RecordingSMOTE.calls.append(len(X))
        return super().fit_resample(X, y, **params)


@pytest.fixture
def recorders(monkeypatch):
    RecordingScaler.fits, RecordingSMOTE.calls = [], []
    monkeypatch.setitem(pipeline_module.SCALERS, "standard", RecordingScaler)
    monkeypatch.setitem(pipeline_module.SAMPLERS, "smote", RecordingSMOTE)
    return RecordingScaler, RecordingSMOTE


def test_scaling_and_smote_are_fitted_on_training_fold_rows_only_never_validation_or_test_rows(recorders):
    scaler, smote = recorders
    spec = spec_for(BREAST_CANCER, augmentation=Augmentation(enabled=True, methods=("smote",)))
    data = split(BREAST_CANCER, spec)
    train, held_out = rows_of(data.X_train), rows_of(data.X_val) | rows_of(data.X_test)
    assert len(train) == len(data.X_train)  # rows are distinct, so sets identify them

    evaluate_trial(spec, data, {})

    assert len(scaler.fits) == spec.folds
    left_out = [train - fitted for fitted in scaler.fits]
    for fitted, fold_rows in zip(scaler.fits, left_out):
        assert fitted < train and not fitted & held_out
        assert len(fold_rows) in (len(train) // spec.folds, len(train) // spec.folds + 1)
    # The rows each fit did not see are the validation folds: disjoint, and together the training part.
    assert sum(map(len, left_out)) == len(train) and set.union(*left_out) == train
    # SMOTE ran once per fold, on exactly that fold's training rows: never on the whole part, never at scoring.
    assert smote.calls == [len(train) - len(rows) for rows in left_out]


def test_the_final_model_is_fitted_on_train_and_validation_rows_and_never_sees_the_test_rows(recorders):
    scaler, smote = recorders
    spec = spec_for(BREAST_CANCER, augmentation=Augmentation(enabled=True, methods=("smote",)))
    data = split(BREAST_CANCER, spec)

    final = fit_final(spec, data, {})

    validation_fit, final_fit = scaler.fits
    assert validation_fit == rows_of(data.X_train)
    assert final_fit == rows_of(data.X_fit) and not final_fit & rows_of(data.X_test)
    assert smote.calls == [len(data.X_train), len(data.X_fit)]
    assert (final.fit_rows, final.test_rows) == (len(data.X_fit), len(data.X_test))


def test_cv_scores_equal_scikit_learns_cross_val_score_on_the_same_folds():
    spec = spec_for(DIABETES, "regression", metric="rmse")
    data = split(DIABETES, spec)
    outcome = evaluate_trial(spec, data, {"alpha": 0.5})
    expected = -cross_val_score(build_pipeline(spec, {"alpha": 0.5}, data.feature_kinds), data.X_train, data.y_train,
                                cv=cv_splitter(spec), scoring="neg_root_mean_squared_error")
    assert outcome.fold_scores == pytest.approx(expected.tolist())
    assert outcome.mean == pytest.approx(expected.mean()) and outcome.std == pytest.approx(expected.std())
    assert all(score > 0 for score in outcome.fold_scores) and not outcome.pruned and outcome.duration_s > 0


def test_error_metrics_are_positive_and_minimized_and_scores_are_maximized():
    directions = {name: metric.direction for name, metric in METRICS.items()}
    assert directions == {"accuracy": "maximize", "balanced_accuracy": "maximize", "precision": "maximize",
                          "recall": "maximize", "f1": "maximize", "roc_auc": "maximize", "log_loss": "minimize",
                          "rmse": "minimize", "mae": "minimize", "r2": "maximize"}
    for name in ("rmse", "mae"):
        spec = spec_for(DIABETES, "regression", metric=name, folds=3)
        assert evaluate_trial(spec, split(DIABETES, spec), {}).mean > 10
    spec = spec_for(BREAST_CANCER, metric="log_loss", estimator="svm", folds=3)
    assert 0 < evaluate_trial(spec, split(BREAST_CANCER, spec), {}).mean < 0.3


def test_classification_test_metrics_are_those_scikit_learn_computes_on_the_test_split():
    spec = spec_for(BREAST_CANCER, metric="roc_auc")
    data = split(BREAST_CANCER, spec)
    final = fit_final(spec, data, {"C": 0.3})
    predicted = final.pipeline.predict(data.X_test)
    assert final.test_metrics == pytest.approx({
        "accuracy": accuracy_score(data.y_test, predicted),
        "precision": precision_score(data.y_test, predicted),
        "recall": recall_score(data.y_test, predicted),
        "f1": f1_score(data.y_test, predicted),
        "roc_auc": roc_auc_score(data.y_test, final.pipeline.predict_proba(data.X_test)[:, 1]),
    })
    assert set(final.validation_metrics) == set(final.test_metrics)
    assert final.classes == [0, 1]


def test_regression_test_metrics_are_rmse_mae_and_r2_on_the_test_split():
    spec = spec_for(DIABETES, "regression")
    data = split(DIABETES, spec)
    final = fit_final(spec, data, {})
    predicted = final.pipeline.predict(data.X_test)
    assert final.test_metrics == pytest.approx({"rmse": root_mean_squared_error(data.y_test, predicted),
                                                "mae": mean_absolute_error(data.y_test, predicted),
                                                "r2": r2_score(data.y_test, predicted)})


def test_multiclass_metrics_are_macro_averages_and_roc_auc_works_for_an_svm():
    spec = spec_for(WINE, estimator="svm", metric="roc_auc", folds=3)
    data = split(WINE, spec)
    assert evaluate_trial(spec, data, {}).mean > 0.9
    final = fit_final(spec, data, {})
    predicted = final.pipeline.predict(data.X_test)
    assert final.test_metrics["f1"] == pytest.approx(f1_score(data.y_test, predicted, average="macro"))
    assert final.test_metrics["roc_auc"] == pytest.approx(
        roc_auc_score(data.y_test, final.pipeline.predict_proba(data.X_test), multi_class="ovr"))


def test_the_final_model_is_built_as_the_trials_were_so_an_svm_searched_for_accuracy_reports_no_roc_auc():
    spec = spec_for(WINE, estimator="svm", metric="accuracy", folds=3)
    final = fit_final(spec, split(WINE, spec), {})
    assert not hasattr(final.pipeline, "predict_proba")
    assert final.test_metrics["roc_auc"] is None and final.test_metrics["accuracy"] > 0.9


def test_the_same_spec_params_and_random_state_give_identical_scores_metrics_and_predictions():
    spec = spec_for(BREAST_CANCER, estimator="random_forest", metric="f1",
                    preprocessing=Preprocessing(feature_selection=FeatureSelection("mutual_info", 10)),
                    augmentation=Augmentation(enabled=True, methods=("smote",)))
    params = {"n_estimators": 15, "max_features": 0.5}
    runs = []
    for _ in range(2):
        data = split(BREAST_CANCER, spec)
        outcome, final = evaluate_trial(spec, data, params), fit_final(spec, data, params)
        runs.append((outcome.fold_scores, final.test_metrics, final.pipeline.predict_proba(data.X_test)))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][2], runs[1][2])
    other = spec_for(BREAST_CANCER, estimator="random_forest", metric="f1", random_state=12)
    assert evaluate_trial(other, split(BREAST_CANCER, other), params).fold_scores != runs[0][0]


def test_a_trial_the_prune_rule_rejects_stops_after_the_fold_that_decided_it():
    spec = spec_for(BREAST_CANCER, folds=5)
    data = split(BREAST_CANCER, spec)
    seen = []
    outcome = evaluate_trial(spec, data, {}, prune=lambda scores: seen.append(list(scores)) or len(scores) == 2)
    assert outcome.pruned and len(outcome.fold_scores) == 2
    assert outcome.mean == pytest.approx(np.mean(outcome.fold_scores))
    assert [len(scores) for scores in seen] == [1, 2]


def test_the_prune_rule_is_not_asked_after_the_last_fold():
    spec = spec_for(BREAST_CANCER, folds=3)
    calls = []
    outcome = evaluate_trial(spec, split(BREAST_CANCER, spec), {}, prune=lambda scores: calls.append(1) and False)
    assert not outcome.pruned and len(outcome.fold_scores) == 3 and len(calls) == 2


def test_a_cancelled_job_stops_its_trial_between_folds():
    spec = spec_for(BREAST_CANCER, folds=3)
    checks = iter([False, True])
    with pytest.raises(TrialCancelled):
        evaluate_trial(spec, split(BREAST_CANCER, spec), {}, cancelled=lambda: next(checks))


def test_a_parameter_the_estimator_rejects_fails_the_trial_loudly():
    spec = spec_for(BREAST_CANCER)
    with pytest.raises(ValueError, match="C"):
        evaluate_trial(spec, split(BREAST_CANCER, spec), {"C": -1.0})

