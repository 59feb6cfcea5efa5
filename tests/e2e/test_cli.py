"""The `modelyard` command against `make run`: each command as a user types it (click's runner, in
process, for speed; the installed script once), what it prints, and the exit code a CI script reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli import main
from tests.support.deployments import FEATURES, QUICK, skops_model
from tests.support.polling import wait_for
from tests.support.walks import embedded_platform

pytestmark = pytest.mark.e2e

PASSWORD = "cli-admin-pw"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with embedded_platform(tmp_path_factory.mktemp("var"), PASSWORD) as (base, _, _):
        yield base


@pytest.fixture(scope="module")
def cli(platform, tmp_path_factory):
    """Runs `modelyard ARGS` as the admin, logged in once; (exit code, stdout, stderr)."""
    env = {"MODELYARD_URL": platform, "MODELYARD_CONFIG_DIR": str(tmp_path_factory.mktemp("config")),
           "MODELYARD_API_KEY": ""}
    runner = CliRunner(env=env)

    def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
        done = runner.invoke(main, list(args), input=input)
        if done.exception and not isinstance(done.exception, SystemExit):
            raise done.exception
        return done.exit_code, done.stdout, done.stderr

    code, out, _ = run("login", "--username", "admin", input=PASSWORD + "\n")
    assert code == 0 and "Logged in to" in out, out
    assert (Path(env["MODELYARD_CONFIG_DIR"]) / "config.json").stat().st_mode & 0o777 == 0o600
    return run


def test_registry_commands_and_their_exit_codes(cli, tmp_path):
    code, out, _ = cli("--output", "json", "models", "create", "cli-iris", "--type", "classification",
                       *[arg for feature in FEATURES for arg in ("--feature", feature)],
                       "--hyperparameters", '{"C": 1.0}')
    assert code == 0, out
    model = json.loads(out)
    assert model["name"] == "cli-iris" and model["features"] == FEATURES

    code, out, _ = cli("models", "ls", "--q", "cli-iris")
    assert code == 0 and re.search(rf"^{model['id']}\s+cli-iris\s+classification\s+registered", out, re.M), out

    (tmp_path / "model.skops").write_bytes(skops_model(0))
    code, out, _ = cli("versions", "upload", "cli-iris", str(tmp_path / "model.skops"),
                       "--metadata", '{"description": "baseline"}')
    assert code == 0 and re.search(r"^number\s+1$", out, re.M), out
    code, out, _ = cli("versions", "download", "cli-iris", "--to", str(tmp_path))
    assert code == 0 and Path(out.strip()).read_bytes() == skops_model(0), out

    # 404 -> 3; 409 and 422 -> 4, with the problem's title and its field errors in one block; 2 for usage.
    code, _, err = cli("models", "show", "no-such-model")
    assert code == 3 and err == "Error: Not found (404): No model has the id or name 'no-such-model'.\n"
    code, _, err = cli("models", "create", "cli-iris", "--type", "classification")
    assert code == 4 and err.startswith("Error: Conflict (409): "), err
    code, _, err = cli("models", "create", "other", "--type", "churn")
    assert code == 4 and "(422)" in err and "\n  type: Must be one of: classification" in err, err
    code, _, err = cli("models", "create", "other")
    assert code == 2 and "Missing option '--type'" in err, err

    code, out, _ = cli("models", "archive", "cli-iris")
    assert code == 0 and re.search(r"^status\s+archived$", out, re.M), out


@pytest.fixture(scope="module")
def trained(cli, tmp_path_factory):
    """`modelyard train` of a small model (two trials) on an uploaded CSV: the command's (code, stdout, stderr)."""
    csv_file = tmp_path_factory.mktemp("data") / "tiny.csv"
    rows = "\n".join(f"{i % 7},{(i * 3) % 11},{'yes' if (i % 7) + (i * 3) % 11 > 8 else 'no'}" for i in range(60))
    csv_file.write_text(f"a,b,label\n{rows}\n")
    code, out, _ = cli("-o", "json", "datasets", "upload", str(csv_file))
    assert code == 0, out
    dataset = json.loads(out)["id"]
    assert cli("models", "create", "cli-tiny", "--type", "classification", "--target", "label")[0] == 0
    return cli("train", "cli-tiny", "--dataset", dataset, "--estimator", "logistic_regression",
               "--strategy", "random", "--max-trials", "2", "--folds", "3")


def test_train_shows_progress_then_the_best_trials(trained):
    code, out, err = trained
    assert code == 0, err
    assert "2/2" in err  # the progress bar's last state
    assert re.search(r"^training [0-9a-f-]{36} succeeded: best accuracy [0-9.]+, version 1 registered$", out, re.M)
    assert len(re.findall(r"^\d+\s+complete\s+[0-9.]+\s", out, re.M)) == 2, out  # a row per trial, best first


def test_a_trained_model_deployed_then_its_drift_and_performance(cli, trained):
    code, out, err = cli("deploy", "cli-tiny", "-e", "development", "--config", json.dumps(QUICK))
    assert code == 0, err
    assert re.findall(r"^  (\w+)", err, re.M)[-1] == "live", err  # each step of the rollout, as it happened
    assert re.search(r"^status\s+live$", out, re.M) and re.search(r"^endpoint\s+cli-tiny-development$", out, re.M)
    lines = "".join(json.dumps({"a": n % 7, "b": (n * 5) % 11}) + "\n" for n in range(30))
    code, out, _ = cli("-o", "json", "endpoints", "predict", "cli-tiny-development", "-", input=lines)
    assert code == 0 and len(json.loads(out)["predictions"]) == 30, out
    code, _, err = cli("endpoints", "predict", "cli-tiny-development", "-", "--format", "jsonl", input='{"a": 1}\n')
    assert code == 4 and "(422)" in err and "\n  " in err, err  # the missing feature, named

    def drift() -> str | None:
        code, out, _ = cli("drift", "cli-tiny", "--refresh")
        return out if code == 0 else None  # 4 (409) until the served predictions reach monitoring

    report = wait_for(drift, timeout=20, interval=0.5, what="the served predictions to reach monitoring")
    assert re.search(r"^model \S+ version 1: drift score [0-9.]+, severity \w+, 30 predictions$", report, re.M)
    assert len(re.findall(r"^[ab]\s+ks\s", report, re.M)) == 2, report
    code, out, _ = cli("performance", "cli-tiny", "--days", "1")
    assert code == 0 and re.search(r"^predictions\s+30$", out, re.M), out


def test_an_uploaded_model_deployed_predicts_from_csv_then_an_ab_test(cli, tmp_path):
    for name, seed in (("cli-served", 0), ("cli-challenger", 1)):
        assert cli("models", "create", name, "--type", "classification",
                   *[arg for feature in FEATURES for arg in ("--feature", feature)])[0] == 0
        (tmp_path / f"{name}.skops").write_bytes(skops_model(seed))
        assert cli("versions", "upload", name, str(tmp_path / f"{name}.skops"))[0] == 0
    code, _, err = cli("deploy", "cli-served", "--environment", "production", "--config", json.dumps(QUICK))
    assert code == 0, err
    code, out, _ = cli("endpoints", "ls")
    assert code == 0 and re.search(r"^cli-served-production\s+production\s+1\s", out, re.M), out

    (tmp_path / "rows.csv").write_text(",".join(FEATURES) + "\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    code, out, _ = cli("endpoints", "predict", "cli-served-production", str(tmp_path / "rows.csv"))
    assert code == 0 and len(re.findall(r"^\S+-\d\s+\d\s+\{", out, re.M)) == 2, out

    code, out, _ = cli("-o", "json", "ab", "create", "--name", "cli test", "--model-a", "cli-served",
                       "--model-b", "cli-challenger", "--split", "0.5", "--success-metric", "accuracy")
    assert code == 0, out
    test = json.loads(out)["id"]
    code, out, _ = cli("ab", "start", test)
    assert code == 0 and re.search(r"^status\s+running$", out, re.M), out
    results = wait_for(lambda: (found := cli("ab", "results", test))[0] == 0 and found[1], timeout=20, interval=0.5,
                       what="monitoring to hear the test started")
    assert results.startswith("units: A "), results


def test_a_viewer_is_refused_and_the_installed_script_exits_with_the_code(cli, platform, tmp_path):
    code, out, _ = cli("admin", "create-user", "vic", "--role", "viewer", "--password", "vic-secret-1")
    assert code == 0 and re.search(r"^role\s+viewer$", out, re.M), out
    code, _, err = cli("admin", "create-user", "shorty", "--password", "short")
    assert code == 4 and "\n  password: " in err, err

    env = {"PATH": "/usr/bin:/bin", "MODELYARD_URL": platform, "MODELYARD_CONFIG_DIR": str(tmp_path)}
    script = str(Path(sys.executable).parent / "modelyard")
    login = subprocess.run([script, "login", "-u", "vic"], input="vic-secret-1\n", env=env, capture_output=True,
                           text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    refused = subprocess.run([script, "models", "create", "mine", "--type", "regression"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 4 and refused.stderr.startswith("Error: Forbidden (403): "), refused.stderr
    listed = subprocess.run([script, "-o", "json", "models", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list), listed.stderr


def test_a_token_the_server_no_longer_takes_is_refused_with_a_hint_to_log_in_again(platform, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"url": platform, "token": "expired", "username": "x"}))
    done = CliRunner(env={"MODELYARD_CONFIG_DIR": str(tmp_path), "MODELYARD_URL": None,
                          "MODELYARD_API_KEY": None}).invoke(main, ["models", "ls"])
    assert done.exit_code == 4, done.output
    assert done.stderr.startswith("Error: Unauthorized (401): ") and done.stderr.endswith(
        "(Log in again: modelyard login.)\n"), done.stderr
