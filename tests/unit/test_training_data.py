"""From CSV bytes to train/validation/test parts: what is kept, how it is split, and the data it refuses."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from services.training.data import load_frame, split
from services.training.data_checks import TrainingDataError, check_class_counts
from services.training.profile import OTHER, profile_training_data
from services.training.spec import Augmentation, TrainingSpec


def mixed_frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """Numeric and text features with missing values, and a text target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "amount": rng.normal(size=rows),
        "ratio": rng.uniform(size=rows),
        "color": rng.choice(["red", "green", "blue"], size=rows),
    })
    frame.loc[::10, "ratio"] = np.nan
    frame.loc[5::10, "color"] = None
    frame["churned"] = np.where(frame["amount"] + (frame["color"] == "red") > 0.3, "yes", "no")
    return frame


def spec_for(frame: pd.DataFrame, target: str = "churned", **overrides) -> TrainingSpec:
    features = tuple(c for c in frame.columns if c != target)
    values = dict(model_type="classification", features=features, target=target, estimator="logistic_regression",
                  folds=3, random_state=7)
    return TrainingSpec(**{**values, **overrides})


def test_a_csv_is_parsed_with_empty_fields_as_missing_values():
    frame = load_frame(b"a,b,label\n1,,x\n2,3,\n")
    assert list(frame.columns) == ["a", "b", "label"]
    assert frame["b"].isna().tolist() == [True, False]
    assert frame["label"].isna().tolist() == [False, True]


def test_bytes_that_are_not_a_csv_are_refused_with_a_readable_message():
    with pytest.raises(TrainingDataError, match="not a readable CSV"):
        load_frame(b"")


def test_the_split_has_the_requested_shares_and_every_class_in_every_part():
    frame = mixed_frame(400)
    data = split(frame, spec_for(frame, validation_split=0.1, test_split=0.25))
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (260, 40, 100)
    for part in (data.y_train, data.y_val, data.y_test):
        assert set(part) == {0, 1}
    shares = [np.mean(part) for part in (data.y_train, data.y_val, data.y_test)]
    assert max(shares) - min(shares) < 0.03  # stratified
    assert data.feature_kinds == {"amount": "numeric", "ratio": "numeric", "color": "categorical"}


def test_the_same_random_state_gives_the_same_rows_in_each_part_and_another_does_not():
    frame = mixed_frame()
    first, again = split(frame, spec_for(frame)), split(frame, spec_for(frame))
    other = split(frame, spec_for(frame, random_state=8))
    assert first.X_test.index.tolist() == again.X_test.index.tolist()
    assert first.X_val.index.tolist() == again.X_val.index.tolist()
    assert first.X_test.index.tolist() != other.X_test.index.tolist()


def test_the_parts_do_not_share_rows_and_together_hold_every_row_with_a_target():
    frame = mixed_frame()
    frame.loc[[3, 4, 50], "churned"] = None
    data = split(frame, spec_for(frame))
    parts = [set(data.X_train.index), set(data.X_val.index), set(data.X_test.index)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == set(frame.index) - {3, 4, 50}
    assert data.dropped_rows == 3
    assert len(data.X_fit) == len(data.y_fit) == len(data.y_train) + len(data.y_val)


def test_a_text_target_is_label_encoded_and_its_labels_kept_in_order():
    frame = mixed_frame()
    data = split(frame, spec_for(frame))
    assert data.classes == ["no", "yes"]
    labels = frame.loc[data.X_test.index, "churned"].tolist()
    assert [data.classes[code] for code in data.y_test] == labels


def test_a_numeric_class_target_keeps_its_labels_as_plain_numbers():
    frame = load_breast_cancer(as_frame=True).frame
    data = split(frame, spec_for(frame, target="target"))
    assert data.classes == [0, 1] and all(type(label) is int for label in data.classes)


def test_a_regression_target_stays_numeric():
    frame = mixed_frame().drop(columns="churned").assign(spend=np.arange(200.0))
    data = split(frame, spec_for(frame, target="spend", model_type="regression", estimator="ridge"))
    assert data.classes is None
    assert data.y_train.dtype == float and set(data.y_train) <= set(np.arange(200.0))


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.assign(churned="yes"), r"only one class \('yes'\)"),
    (lambda f: f.assign(churned=None), "empty in all 200 rows"),
    (lambda f: f.iloc[:0], "no rows"),
    (lambda f: f.drop(columns="color"), "no column.*'color'"),
    (lambda f: f.assign(churned=["rare"] * 4 + ["common"] * 196), "Class 'rare' has 4 rows.*fewer than the 3"),
], ids=["one-class", "target-all-missing", "zero-rows", "feature-missing", "smallest-class-below-folds"])
def test_data_that_cannot_train_is_refused_with_a_message_a_person_understands(change, message):
    frame = mixed_frame()
    with pytest.raises(TrainingDataError, match=message) as caught:
        split(change(frame), spec_for(frame))
    assert caught.value.status == 422


def test_rows_left_without_a_target_count_towards_nothing_and_can_leave_one_class():
    frame = mixed_frame()
    frame.loc[frame["churned"] == "no", "churned"] = np.nan
    with pytest.raises(TrainingDataError, match="only one class"):
        split(frame, spec_for(frame))


def test_a_text_regression_target_is_refused_naming_a_bad_value():
    frame = mixed_frame()
    with pytest.raises(TrainingDataError, match="numeric target.*'(yes|no)'"):
        split(frame, spec_for(frame, model_type="regression", estimator="ridge"))


def test_smote_is_refused_when_a_class_is_too_small_for_its_neighbours_in_each_fold():
    frame = mixed_frame().assign(churned=["rare"] * 12 + ["common"] * 188)
    augmented = spec_for(frame, folds=3, augmentation=Augmentation(enabled=True, methods=("smote",)))
    with pytest.raises(TrainingDataError, match="SMOTE needs more than 5 rows"):
        split(frame, augmented)
    oversampled = spec_for(frame, folds=3, augmentation=Augmentation(enabled=True, methods=("random_oversampling",)))
    assert split(frame, oversampled).classes == ["common", "rare"]


def test_class_counts_from_a_dataset_schema_can_be_checked_before_splitting():
    check_class_counts({"a": 100, "b": 30}, folds=5, validation_split=0.1, test_split=0.2)
    with pytest.raises(TrainingDataError, match="Class 'b' has 6 rows, about 4"):
        check_class_counts({"a": 100, "b": 6}, folds=5, validation_split=0.1, test_split=0.2)


def test_the_profile_bins_numbers_by_deciles_and_counts_categories():
    frame = mixed_frame(400)
    data = split(frame, spec_for(frame))
    profile = profile_training_data(data.X_fit, data.y_fit, data.feature_kinds, classes=data.classes)
    amount, ratio, color = (profile["features"][name] for name in ("amount", "ratio", "color"))
    assert profile["rows"] == len(data.y_fit)
    assert amount["bin_edges"] == pytest.approx(np.quantile(data.X_fit["amount"], np.linspace(0, 1, 11)).tolist())
    assert sum(amount["histogram"]) == len(data.y_fit) and len(amount["histogram"]) == 10
    assert ratio["null_share"] == pytest.approx(data.X_fit["ratio"].isna().mean())
    assert ratio["mean"] == pytest.approx(data.X_fit["ratio"].mean())
    assert set(color["frequencies"]) == {"red", "green", "blue"}
    assert sum(color["frequencies"].values()) == data.X_fit["color"].notna().sum()
    assert profile["target"]["frequencies"] == {"no": int((data.y_fit == 0).sum()), "yes": int((data.y_fit == 1).sum())}


def test_the_profile_groups_rare_categories_and_describes_a_numeric_target():
    X = pd.DataFrame({"city": [f"c{i}" for i in range(60)] * 2, "empty": [np.nan] * 120})
    profile = profile_training_data(X, np.arange(120.0), {"city": "categorical", "empty": "numeric"})
    city = profile["features"]["city"]
    assert len(city["frequencies"]) == 51 and city["frequencies"][OTHER] == 20 and city["distinct"] == 60
    assert profile["features"]["empty"] == {"kind": "numeric", "count": 0, "infinite": 0, "null_share": 1.0, "bin_edges": [],
                                            "histogram": [], "mean": None, "std": None, "min": None, "max": None}
    assert profile["target"]["min"] == 0 and profile["target"]["max"] == 119


def test_infinities_in_the_training_data_are_counted_and_never_put_in_the_profile():
    X = pd.DataFrame({"x": [1.0, np.inf, 2.0, -np.inf, np.nan, 3.0]})
    profile = profile_training_data(X, np.array([1.0, 2.0, np.inf, 4.0, 5.0, 6.0]), {"x": "numeric"})
    x = profile["features"]["x"]
    assert (x["count"], x["infinite"], x["min"], x["max"], x["mean"]) == (3, 2, 1.0, 3.0, 2.0)
    assert x["null_share"] == pytest.approx(1 / 6)
    assert profile["target"]["infinite"] == 1
    json.loads(json.dumps(profile), parse_constant=pytest.fail)  # no NaN or Infinity anywhere


class _Parity:
    """A fitted classifier's stand-in: class 1 for odd values of `a`, as encoded labels."""

    def predict(self, X):
        return (X["a"].to_numpy() % 2).astype(int)


def test_a_reference_sample_is_every_row_when_few_and_a_fixed_draw_when_many():
    import pandas as pd

    from services.training.profile import reference_sample
    from shared.served_model import REFERENCE_PREDICTION

    few = pd.DataFrame({"a": range(50)})
    kept = reference_sample(few, _Parity(), ["even", "odd"], random_state=1)
    assert kept["a"].tolist() == list(range(50))
    # The model's predictions, as the endpoint answers them (labels, not their codes).
    assert kept[REFERENCE_PREDICTION].tolist() == ["even", "odd"] * 25
    many = pd.DataFrame({"a": range(25_000)})
    drawn = reference_sample(many, _Parity(), None, random_state=1)
    assert len(drawn) == 10_000 and drawn["a"].is_unique and drawn.index.is_monotonic_increasing
    assert drawn[REFERENCE_PREDICTION].tolist() == (drawn["a"] % 2).tolist()
    assert drawn.equals(reference_sample(many, _Parity(), None, random_state=1))  # the same draw for the same seed
