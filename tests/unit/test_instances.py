"""A predict request's instances are checked against the model's features, and bad rows are named."""

import math

import pytest

from services.serving.instances import MAX_REPORTED_ROWS, validate_instances
from shared.errors import PayloadTooLarge, ValidationFailed

FEATURES = ["age", "income", "city"]
KINDS = {"age": "numeric", "income": "numeric", "city": "categorical"}


def check(instances, *, max_rows=100, nullable=frozenset()):
    return validate_instances(instances, features=FEATURES, kinds=KINDS, max_rows=max_rows, nullable=nullable)


def errors_of(instances, **options):
    with pytest.raises(ValidationFailed) as refused:
        check(instances, **options)
    assert refused.value.status == 422
    return refused.value.errors


def row(**changes):
    return {"age": 41, "income": 52000.5, "city": "Lyon", **changes}


def test_right_rows_come_back_unchanged():
    rows = [row(), row(age=3.5, city=7), row(city=True)]
    assert check(rows) is rows


@pytest.mark.parametrize("instances", [None, {"age": 1}, "rows", 3])
def test_instances_that_are_not_a_list_are_refused(instances):
    assert list(errors_of(instances)) == ["instances"]


def test_an_empty_list_is_refused():
    assert errors_of([]) == {"instances": ["Must hold at least one instance."]}


def test_more_rows_than_the_limit_is_too_large_and_says_the_limit():
    with pytest.raises(PayloadTooLarge, match="more than the 2 one request") as refused:
        check([row()] * 3, max_rows=2)
    assert refused.value.status == 413


def test_each_bad_field_is_named_under_its_row():
    bad = [row(), row(age="41"), row(income=True), {"age": 1, "city": "x"}, row(colour="red"), ["not", "a", "row"],
           row(city=1.5), row(city=["Lyon"])]
    assert errors_of(bad) == {"instances": {
        "1": {"age": ["Not a valid number."]},
        "2": {"income": ["Not a valid number."]},
        "3": {"income": ["Missing data for required field."]},
        "4": {"colour": ["Unknown field."]},
        "5": {"_schema": ["Invalid input type: each instance must be an object of feature values."]},
        "6": {"city": ["Not a valid category: send a string, an integer or a boolean."]},
        "7": {"city": ["Not a valid category: send a string, an integer or a boolean."]},
    }}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10 ** 400])
def test_values_no_float_holds_are_refused(value):
    assert errors_of([row(income=value)])["instances"]["0"] == {
        "income": ["Special numeric values (nan or infinity) are not permitted."]}


def test_null_is_refused_unless_the_feature_was_missing_in_training():
    assert errors_of([row(age=None, city=None)])["instances"]["0"] == {
        "age": ["Field may not be null."], "city": ["Field may not be null."]}
    rows = [row(age=None, city=None), row()]
    assert check(rows, nullable=frozenset({"age", "city"})) is rows
    assert errors_of([row(age=None, income=None)], nullable=frozenset({"age"}))["instances"] == {
        "0": {"income": ["Field may not be null."]}}


def test_only_the_first_bad_rows_are_reported():
    errors = errors_of([row(age="x")] * 500, max_rows=1000)["instances"]
    assert len(errors) == MAX_REPORTED_ROWS
    assert list(errors)[-1] == str(MAX_REPORTED_ROWS - 1)


def test_a_model_with_only_numeric_or_only_categorical_features_validates():
    assert validate_instances([{"x": 1}], features=["x"], kinds={"x": "numeric"}, max_rows=1) == [{"x": 1}]
    assert validate_instances([{"c": "a"}], features=["c"], kinds={"c": "categorical"}, max_rows=1) == [{"c": "a"}]
    with pytest.raises(ValidationFailed):
        validate_instances([{"x": "1"}], features=["x"], kinds={"x": "numeric"}, max_rows=1)
