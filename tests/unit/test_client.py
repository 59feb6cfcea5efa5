"""The Python client on its own: what it imports, how it reads problems, pages and retries, against a
small stdlib HTTP server that answers as scripted (the client against the platform: tests/e2e/test_examples.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelyard.client import Client, Conflict, ModelyardError, NotFound, ValidationError
from modelyard.client.deployment import instances
from modelyard.client.results import Model


def test_the_client_imports_no_server_library():
    code = ("import sys, modelyard.client; "
            "print(sorted(m for m in ('flask', 'sqlalchemy', 'sklearn', 'pandas', 'celery') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of the server's script, and logs what it got."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.log.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, body = self.server.script.pop(0)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.script, httpd.log = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def client_of(server, **kwargs) -> Client:
    return Client(f"http://127.0.0.1:{server.server_port}", api_key="key", retries=3, **kwargs)


def problem(status: int, title: str, detail: str, errors: dict | None = None) -> tuple[int, dict]:
    body = {"type": f"https://modelyard.dev/problems/{title.lower()}", "title": title, "status": status,
            "detail": detail, "instance": "/api/v1/models"}
    return status, {**body, "errors": errors} if errors else body


def test_a_refusal_is_its_typed_error_with_the_problems_fields(server):
    server.script = [problem(422, "Validation failed", "The request has invalid fields: type",
                             {"type": ["Must be one of: classification, regression."],
                              "hyperparameters": {"max_depth": ["Not a valid integer."]}})]
    with pytest.raises(ValidationError) as raised:
        client_of(server).models.create("churn", type="churn")
    error = raised.value
    assert error.status == 422 and error.title == "Validation failed" and error.instance == "/api/v1/models"
    assert error.errors["type"] == ["Must be one of: classification, regression."]
    assert str(error) == ("Validation failed (422): The request has invalid fields: type\n"
                          "  type: Must be one of: classification, regression.\n"
                          "  hyperparameters.max_depth: Not a valid integer.")
    assert len(server.log) == 1  # a 4xx is the server's answer: never retried


def test_a_503_is_retried_for_a_get_and_a_create_with_its_idempotency_key_but_never_a_4xx(server):
    unavailable = problem(503, "Service unavailable", "Retry.")
    model = {"id": "m1", "name": "churn", "type": "classification", "status": "registered"}
    server.script = [unavailable, unavailable, (200, model)]
    assert client_of(server).models.get("churn").id == "m1"
    assert [entry[1] for entry in server.log] == ["/api/v1/models/churn"] * 3

    server.log.clear()
    server.script = [unavailable, (201, model)]
    client_of(server).models.create("churn", type="classification")
    keys = {entry[2]["Idempotency-Key"] for entry in server.log}
    assert len(server.log) == 2 and len(keys) == 1  # the same key twice: the server answers the repeat as the first

    server.log.clear()
    server.script = [problem(409, "Conflict", "A model named 'churn' exists.")]
    with pytest.raises(Conflict, match="exists"):
        client_of(server).models.create("churn", type="classification")
    assert len(server.log) == 1


def test_a_retried_upload_sends_the_whole_file_again_under_one_idempotency_key(server, tmp_path):
    (tmp_path / "model.skops").write_bytes(b"model bytes " * 100)
    server.script = [problem(503, "Service unavailable", "Retry."), (201, {"number": 1, "status": "ready"})]
    version = client_of(server).versions.upload("churn", tmp_path / "model.skops", {"description": "first"})
    assert version.number == 1 and len(server.log) == 2
    assert all(b"model bytes " * 100 in body and b'{"description": "first"}' in body for *_, body in server.log)
    assert len({headers["Idempotency-Key"] for _, _, headers, _ in server.log}) == 1


def test_a_post_without_an_idempotency_key_is_not_retried(server):
    server.script = [problem(503, "Service unavailable", "Retry.")]
    with pytest.raises(ModelyardError) as raised:
        client_of(server).endpoints.predict("churn-production", [{"age": 1}])
    assert raised.value.status == 503 and type(raised.value) is ModelyardError and len(server.log) == 1


def test_a_list_is_an_iterator_over_every_page(server):
    server.script = [(200, {"items": [{"id": "a"}, {"id": "b"}], "next_cursor": "c1"}),
                     (200, {"items": [{"id": "c"}], "next_cursor": None})]
    assert [model.id for model in client_of(server).models.list(q="churn")] == ["a", "b", "c"]
    assert [entry[1] for entry in server.log] == ["/api/v1/models?limit=500&q=churn",
                                                  "/api/v1/models?limit=500&q=churn&cursor=c1"]


def test_an_answer_that_is_not_a_problem_still_raises_with_its_status(server):
    server.script = [(404, ["not", "a", "problem"])]
    with pytest.raises(NotFound, match=r"Not Found \(404\)"):
        client_of(server).models.get("nope")


def test_a_model_reprs_as_what_a_user_looks_for_and_keeps_the_whole_answer():
    model = Model.from_json({"id": "m1", "name": "churn", "type": "classification", "status": "trained",
                             "latest_version": 2, "aliases": {"champion": 2}, "hyperparameters": {"C": 1.0}})
    assert repr(model) == ("Model(id='m1', name='churn', type='classification', status='trained', "
                           "latest_version=2, aliases={'champion': 2})")
    assert model.hyperparameters == {"C": 1.0} and model.raw["hyperparameters"] == {"C": 1.0}


def test_rows_from_a_data_frame_are_plain_json_with_missing_values_as_null():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"age": [42, 23], "income": [61000.5, float("nan")], "plan": ["pro", "basic"]})
    rows = instances(frame)
    assert rows == [{"age": 42, "income": 61000.5, "plan": "pro"}, {"age": 23, "income": None, "plan": "basic"}]
    assert json.dumps(rows, allow_nan=False)
