"""The suite's guard against answers that are not strict JSON fails the test that got one."""

import pytest
from flask import Flask, Response


def _app() -> Flask:
    app = Flask("probe")
    answers = {
        "/finite": Response('{"a": 1.5}', mimetype="application/json"),
        "/infinite": Response('{"a": Infinity}', mimetype="application/json"),
        "/nan-problem": Response('{"a": NaN}', mimetype="application/problem+json"),
        "/text": Response("NaN", mimetype="text/plain"),
    }
    for path, answer in answers.items():
        app.add_url_rule(path, endpoint=path, view_func=lambda answer=answer: answer)
    return app


def test_a_test_client_refuses_an_answer_holding_infinity_or_nan_and_names_the_request():
    client = _app().test_client()
    assert client.get("/finite").json == {"a": 1.5}
    assert client.get("/text").status_code == 200
    for path in ("/infinite", "/nan-problem"):
        with pytest.raises(AssertionError, match=f"GET {path} answered invalid JSON"):
            client.get(path)
