"""make run's web process forwards what the serving manifest's locations match, and says so when the
serving process does not answer."""

from werkzeug.test import Client

from launch.forward import Forward


def rest_of_the_api(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the web app"]


def test_other_paths_stay_with_the_web_app_and_predictions_to_a_silent_serving_process_are_503(tmp_path):
    client = Client(Forward(rest_of_the_api, "serving", str(tmp_path / "nobody-listens.sock")))
    assert client.get("/api/v1/endpoints/churn-production").get_data() == b"the web app"
    answer = client.post("/api/v1/endpoints/churn-production/predict", json={"instances": []})
    assert answer.status_code == 503 and answer.mimetype == "application/problem+json"
    assert answer.json["title"] == "Serving unavailable"
