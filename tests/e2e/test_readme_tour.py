"""The README's tour, run as written: its shell blocks, in order, in one bash, against `make run`.

So that the README cannot drift from the platform: a command that no longer works, a placeholder a
reader cannot fill in, or an answer that is now an error fails this test. The one liberty taken is
the address: the platform under test listens on a free port instead of 8000.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.polling import wait_for
from tests.support.walks import ROOT, Platform, free_port, login

pytestmark = pytest.mark.e2e

PASSWORD = "change-me"  # the tour starts `MODELYARD_ADMIN_PASSWORD=change-me make run`
README_ADDRESS = "http://127.0.0.1:8000"
# Any error answer stops the tour, as it would stop a reader; curl's own options stay as written.
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --show-error "$@"; }
"""


def tour_script(readme: str, base: str) -> str:
    """The shell blocks of the README's "A short tour" section, in order, pointed at `base`."""
    section = readme.split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks, "the README's tour has no shell blocks"
    return PRELUDE + "\n".join(blocks).replace(README_ADDRESS, base)


def _all_events_sent(database: Path) -> bool:
    # make run's relay hands each event to its consumers before it marks the row sent.
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] == 0


def test_the_tour_starts_the_way_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    assert f"MODELYARD_ADMIN_PASSWORD={PASSWORD} make run" in readme
    assert README_ADDRESS + "/api/v1" in tour_script(readme, README_ADDRESS)


def test_the_readme_tour_runs_top_to_bottom_against_make_run(tmp_path):
    var_dir = tmp_path / "var"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        "MODELYARD_VAR_DIR": str(var_dir),
        "MODELYARD_BIND": f"127.0.0.1:{port}",
        "MODELYARD_ADMIN_PASSWORD": PASSWORD,
    }
    var_dir.mkdir()
    run = Platform("run", env, tmp_path / "run.log")
    base = f"http://127.0.0.1:{port}"
    try:
        run.wait_ready(base + "/readyz")
        # A reader's shell stands in the checkout; the tour moves to a `mktemp -d` directory of its own.
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        script = tour_script((ROOT / "README.md").read_text(), base)
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env={**env, "TMPDIR": str(scratch)},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (f"the tour stopped (exit {done.returncode}):\n{done.stderr[-4000:]}\n"
                                      f"--- its output:\n{done.stdout[-4000:]}")
        # What the tour says a reader ends up with.
        [workdir] = scratch.iterdir()
        made = {path.name for path in workdir.iterdir()}
        assert {"churn-v1.skops", "customers.csv"} <= made, made  # downloads, beside the uploaded files
        assert (workdir / "customers.csv").read_bytes() == (workdir / "march-export.csv").read_bytes()
        # The poll loops' last words: the brief's example 2, then the cancer training.
        assert done.stdout.splitlines().count("succeeded") == 2, done.stdout[-4000:]
        # The brief's example 3: the churn model's deployment went live.
        assert "live" in done.stdout.splitlines(), done.stdout[-4000:]
        # The cancelled second training leaves the model trained, once every event has been handled.
        wait_for(lambda: _all_events_sent(var_dir / "modelyard.db"), timeout=10, what="every event to be handled")
        http = login(base, PASSWORD)
        assert http.get(f"{base}/api/v1/models/cancer").json()["status"] == "trained"
        jobs = http.get(f"{base}/api/v1/models/cancer/trainings").json()["items"]
        assert [(job["status"], job["phase"]) for job in jobs] == [("cancelled", None), ("succeeded", None)]
        # The brief's example 2, sent as written: a random forest from the model's hyperparameters.
        [churn] = http.get(f"{base}/api/v1/models/Customer%20Churn%20Predictor/trainings").json()["items"]
        assert (churn["status"], churn["estimator"], churn["best_params"]["random_state"]) == \
            ("succeeded", "random_forest", 42)
        churn_model = f"{base}/api/v1/models/Customer%20Churn%20Predictor"
        wait_for(lambda: http.get(churn_model).json()["status"] == "deployed", timeout=10, what="the model deployed")
    finally:
        run.stop()
