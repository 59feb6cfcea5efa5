"""Search spaces: what a request may ask for, and how each strategy receives it (no servers needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from skopt.space import Categorical, Integer, Real

from services.training.estimators import ESTIMATORS, resolve_estimator
from services.training.optimizers import (
    GRID_POINTS, json_safe_params, params_from_skopt, params_to_skopt, to_optuna_distributions, to_parameter_grid,
    to_sampler_distributions, to_skopt_dimensions,
)
from services.training.search_space import MAX_PARAMS, SearchSpaceError, parse_search_space, space_size

# Every warning is an error here: the converters must not lean on anything deprecated or experimental.
# Any warning from optuna, skopt or scikit-learn is a bug here (ResourceWarnings from unrelated
# garbage collection are not).
pytestmark = [pytest.mark.filterwarnings("error::DeprecationWarning"), pytest.mark.filterwarnings("error::FutureWarning"),
              pytest.mark.filterwarnings("error::UserWarning"), pytest.mark.filterwarnings("error::RuntimeWarning")]

FOREST = resolve_estimator("random_forest", "classification")
MIXED = {
    "n_estimators": {"type": "int", "low": 10, "high": 200, "log": True},
    "max_depth": {"type": "int", "low": 2, "high": 4},
    "max_features": {"type": "float", "low": 0.1, "high": 1.0},
    "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
}


def parse(raw, estimator=FOREST, model_type="classification"):
    return parse_search_space(raw, estimator, model_type)


def refusal(raw, estimator=FOREST, model_type="classification") -> dict:
    with pytest.raises(SearchSpaceError) as caught:
        parse(raw, estimator, model_type)
    assert caught.value.status == 422
    return caught.value.errors


@pytest.mark.parametrize("name,model_type", [(name, model_type) for name, spec in sorted(ESTIMATORS.items())
                                             for model_type in spec.model_types])
def test_every_estimators_default_space_is_valid_for_it(name, model_type):
    estimator = resolve_estimator(name, model_type)
    space = parse(None, estimator, model_type)
    assert space == parse(estimator.default_space(model_type), estimator, model_type)
    assert list(space) == sorted(space) and space


def test_a_space_is_normalised_with_typed_numbers_sorted_names_and_log_off_by_default():
    space = parse({"min_weight_fraction_leaf": {"type": "float", "low": 0, "high": 0.5},
                   "max_depth": {"type": "int", "low": 2, "high": 9}})
    assert list(space) == ["max_depth", "min_weight_fraction_leaf"]
    assert space == {"max_depth": {"type": "int", "low": 2, "high": 9, "log": False},
                     "min_weight_fraction_leaf": {"type": "float", "low": 0.0, "high": 0.5, "log": False}}
    assert isinstance(space["min_weight_fraction_leaf"]["low"], float)
    assert json.loads(json.dumps(space)) == space


def test_a_parameter_the_estimator_does_not_have_is_refused_by_name():
    errors = refusal({"n_estimators": {"type": "int", "low": 10, "high": 50},
                      "learning_rate": {"type": "float", "low": 0.01, "high": 0.3}})
    assert list(errors) == ["learning_rate"]
    assert "RandomForestClassifier" in errors["learning_rate"][0] and "n_estimators" in errors["learning_rate"][0]


def test_random_state_is_not_searchable_because_the_training_sets_it():
    assert "random_state" in refusal({"random_state": {"type": "int", "low": 0, "high": 10}})


@pytest.mark.parametrize("definition,phrase", [
    ({"type": "float", "low": 1.0, "high": 1.0}, "less than"),
    ({"type": "int", "low": 9, "high": 2}, "less than"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log"),
    ({"type": "int", "low": 2.5, "high": 9}, "integers"),
    ({"type": "int", "low": 2, "high": 9.0}, "integers"),
    ({"type": "int", "low": True, "high": 9}, "integers"),
    ({"type": "float", "low": "0.1", "high": 1.0}, "numbers"),
    ({"type": "float", "low": 0.1}, "numbers"),
    ({"type": "float", "low": 0.1, "high": 1.0, "log": "yes"}, "log"),
    ({"type": "float", "low": 0.1, "high": 1.0, "step": 0.1}, "step"),
    ({"type": "uniform", "low": 0.1, "high": 1.0}, "type"),
    ([0.1, 0.5], "type"),
], ids=["float-empty-range", "int-reversed", "log-from-zero", "int-float-low", "int-float-high", "int-bool",
        "string-number", "missing-high", "log-not-bool", "unknown-key", "unknown-type", "bare-list"])
def test_a_malformed_range_is_refused_naming_the_parameter_and_the_problem(definition, phrase):
    errors = refusal({"max_features": definition})
    assert phrase in errors["max_features"][0]


@pytest.mark.parametrize("choices,phrase", [
    ([], "non-empty"), ("gini", "non-empty"), (["gini", "gini"], "distinct"), ([["gini"]], "strings"),
    ([float("nan")], "strings"), (list(range(101)), "at most"),
], ids=["empty", "not-a-list", "duplicates", "nested", "nan", "too-many"])
def test_bad_choices_are_refused(choices, phrase):
    errors = refusal({"criterion": {"type": "categorical", "choices": choices}})
    assert phrase in errors["criterion"][0]


def test_true_and_one_are_different_choices():
    space = parse({"bootstrap": {"type": "categorical", "choices": [True, False]},
                   "max_depth": {"type": "categorical", "choices": [1, True, None]}})
    assert space["max_depth"]["choices"] == [1, True, None]


def test_a_value_scikit_learn_would_reject_at_fit_is_refused_before_training():
    errors = refusal({"C": {"type": "float", "low": 0.0, "high": 10.0}}, resolve_estimator("svm", "classification"))
    assert "0.0 is not accepted" in errors["C"][0] and "'C' parameter" in errors["C"][0]
    errors = refusal({"criterion": {"type": "categorical", "choices": ["gini", "mse"]}})
    assert "'mse' is not accepted" in errors["criterion"][0]
    errors = refusal({"n_estimators": {"type": "float", "low": 10, "high": 100}})
    assert "n_estimators" in errors


def test_a_parameter_the_platform_sets_itself_is_refused_as_not_searchable():
    errors = refusal({"n_jobs": {"type": "int", "low": 1, "high": 4}})
    assert "set by the platform" in errors["n_jobs"][0]


def test_a_space_that_is_not_an_object_or_too_large_is_refused_as_a_whole():
    assert "_schema" in refusal(["n_estimators"])
    too_many = {f"p{i}": {"type": "int", "low": 0, "high": 1} for i in range(MAX_PARAMS + 1)}
    assert "at most" in refusal(too_many)["_schema"][0].lower()


def test_every_bad_parameter_is_reported_at_once():
    errors = refusal({"max_depth": {"type": "int", "low": 5, "high": 1}, "nope": {"type": "int", "low": 0, "high": 1},
                      "n_estimators": {"type": "int", "low": 10, "high": 50}})
    assert sorted(errors) == ["max_depth", "nope"]


def test_the_grid_spaces_ranges_evenly_or_logarithmically_and_keeps_choices():
    grid = to_parameter_grid(parse({**MIXED, "min_weight_fraction_leaf": {"type": "float", "low": 0.0,
                                                                         "high": 0.4}}))
    assert grid["n_estimators"] == [10, 21, 45, 95, 200]
    assert grid["max_depth"] == [2, 3, 4]  # five points over three integers, deduplicated
    assert grid["min_weight_fraction_leaf"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert grid["class_weight"] == [None, "balanced"]
    assert len(grid["max_features"]) == GRID_POINTS and grid["max_features"][-1] == 1.0


def test_a_space_is_finite_only_without_float_ranges():
    assert space_size(parse(MIXED)) is None
    assert space_size(parse({k: MIXED[k] for k in ("max_depth", "class_weight")})) == 6
    assert space_size({}) == 1


def test_optuna_distributions_match_the_space():
    distributions = to_optuna_distributions(parse(MIXED))
    assert distributions == {
        "class_weight": CategoricalDistribution([None, "balanced"]),
        "max_depth": IntDistribution(2, 4),
        "max_features": FloatDistribution(0.1, 1.0),
        "n_estimators": IntDistribution(10, 200, log=True),
    }


def test_skopt_dimensions_match_the_space_and_points_round_trip_to_json_safe_params():
    space = parse(MIXED)
    dimensions = to_skopt_dimensions(space)
    assert [d.name for d in dimensions] == sorted(MIXED)
    assert isinstance(dimensions[0], Categorical) and dimensions[0].categories == (0, 1)
    assert isinstance(dimensions[1], Integer) and isinstance(dimensions[2], Real)
    assert dimensions[3].prior == "log-uniform"
    params = params_from_skopt(space, [np.int64(1), np.int64(3), np.float64(0.5), np.int64(20)])
    assert params == {"class_weight": "balanced", "max_depth": 3, "max_features": 0.5, "n_estimators": 20}
    assert [type(v) for v in params.values()] == [str, int, float, int]
    assert params_to_skopt(space, params) == [1, 3, 0.5, 20]


def test_sampler_distributions_draw_values_inside_the_space():
    space = parse(MIXED)
    distributions = to_sampler_distributions(space)
    rng = np.random.RandomState(0)
    drawn = [distributions["n_estimators"].rvs(random_state=rng) for _ in range(2000)]
    assert min(drawn) == 10 and max(drawn) == 200
    assert np.median(drawn) < 60  # log-uniform: the geometric middle of 10..200 is about 45
    assert distributions["class_weight"] == [None, "balanced"]
    assert 2 <= distributions["max_depth"].rvs(random_state=rng) <= 4


def test_json_safe_params_turn_numpy_scalars_into_the_parameters_own_types():
    space = parse(MIXED)
    params = json_safe_params(space, {"class_weight": np.str_("balanced"), "max_depth": np.int64(3),
                                      "max_features": np.float64(0.25), "n_estimators": np.float64(12.0)})
    assert json.dumps(params) and [type(v) for v in params.values()] == [str, int, float, int]
