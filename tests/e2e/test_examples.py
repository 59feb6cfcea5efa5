"""The brief's five examples in Python (examples/), run as a user runs them: one after another, each
`python examples/<n>_<name>.py` against `make run`, through the client (modelyard.client)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.walks import ROOT, embedded_platform

pytestmark = pytest.mark.e2e

PASSWORD = "examples-admin-pw"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with embedded_platform(tmp_path_factory.mktemp("var"), PASSWORD) as (base, _, env):
        yield {**env, "MODELYARD_URL": base, "MODELYARD_PASSWORD": PASSWORD}


def example(env: dict, name: str) -> str:
    done = subprocess.run([sys.executable, f"examples/{name}.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}"
    return done.stdout


def test_the_five_examples_run_in_order_against_make_run(platform):
    registered = example(platform, "1_register")
    assert re.search(r"^registered Model\(id='[0-9a-f-]{36}', name='Customer Churn Predictor', "
                     r"type='classification', status='registered'", registered, re.M), registered
    # Run again, the name is taken: the example says so and reads the model instead.
    again = example(platform, "1_register")
    assert again.startswith("Conflict (409): ") and "already registered Model(" in again, again

    trained = example(platform, "2_train")
    assert "uploaded Dataset(" in trained and "rows=400, columns=5)" in trained, trained
    assert re.search(r"^trained Training\(.*status='succeeded'.*version_number=1", trained, re.M), trained
    assert len(re.findall(r"^  trial \d+ 0\.\d{4} \{", trained, re.M)) == 3, trained  # the best three
    assert re.search(r"^registered Version\(.*number=1, status='ready', provenance='trained'", trained, re.M)

    deployed = example(platform, "3_deploy")
    assert re.findall(r"^rollout (\w+)", deployed, re.M)[-1] == "live", deployed
    assert "deployed Deployment(" in deployed and "endpoint='customer-churn-predictor-production'" in deployed
    assert re.search(r"^predicted Prediction\(predictions=\[[01], [01]\], .*model_version=1\)", deployed, re.M)

    compared = example(platform, "4_ab_test")
    assert re.search(r"^created ABTest\(.*name='Churn Model Comparison', status='draft'", compared, re.M), compared
    assert re.search(r"^started ABTest\(.*status='running'.*traffic_split=0\.5", compared, re.M), compared

    monitored = example(platform, "5_monitor")
    assert "recorded Recorded(accepted=1, stored=1, duplicates=0, rejected=[])" in monitored, monitored
    assert re.search(r"^drift DriftReport\(.*version=1, overall_drift_score=[0-9.]+, severity='\w+'", monitored, re.M)
    assert re.search(r"^performance Performance\(summary=\{.*'predictions': \d+", monitored, re.M), monitored
