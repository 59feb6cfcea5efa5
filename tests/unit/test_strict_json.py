"""Client JSON as the platform reads it: what Python's json gives for every body it accepts, and a
reason for every body it refuses, whichever parser read it."""

from __future__ import annotations

import json

import pytest

from shared.strict_json import MAX_DEPTH, loads


@pytest.mark.parametrize("text", [
    '{"instances": [{"a": 1.5, "b": -2, "c": "x", "d": null, "e": true}], "request_id": "r"}',
    '[0.1, 1e308, -0.0, 5e-324, 9223372036854775807, -9223372036854775808]',
    '{"big": 123456789012345678901234567890, "negative": -9223372036854775809}',  # exact, as Python reads them
    '[0.0012345678901234567, 1.2345678901234567e-05, 12345678901234567890.5, 1e0000000000000000001]',
    '[0.00012340283920019338, 12345678901234567890123, -98765432109876543210]',  # a fraction's run, then integers
    '{"a": 1, "a": 2}',  # the last of a repeated key, as Python's json keeps it
    '"caf\\u00e9 \\ud83d\\ude00"',
    '[[[[1]]]]',
])
def test_accepted_bodies_read_as_pythons_json_reads_them(text):
    for body in (text, text.encode()):
        value = loads(body)
        assert value == json.loads(text)
        assert json.dumps(value) == json.dumps(json.loads(text))  # types too: an int stays an int


@pytest.mark.parametrize("text, reason", [
    ('{"a": NaN}', "NaN"),
    ('[Infinity]', "Infinity"),
    ('[-Infinity]', "Infinity"),
    ('[1e999]', "too large"),
    ('{"name": "m\\u0000"}', "NUL"),
    ('{"m\\u0000": 1}', "NUL"),
    ('{"a": ', "Expecting value"),
    ('["\\ud800"]', "surrogate"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nests deeper"),
    ("[" * 5000 + "]" * 5000, "nests deeper"),
    ('{"rows": [' + ", ".join(['{"a": [1]}'] * 100) + '], "deep": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
     "nests deeper"),
])
def test_refused_bodies_say_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        loads(text)


def test_nesting_up_to_the_limit_is_accepted_however_many_brackets_the_body_holds():
    deep = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    body = '{"rows": [' + ", ".join(['{"a": [1, {"b": 2}]}'] * 200) + '], "deep": ' + deep + "}"
    assert loads(body)["rows"][199] == {"a": [1, {"b": 2}]}
