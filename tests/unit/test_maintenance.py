"""Beat's housekeeping that needs no database: partial uploads left by a dead process."""

import os

import workers.maintenance  # noqa: F401  registers the tasks
from shared.config import load_settings
from workers.celery_app import make_celery


def test_beat_purges_stale_partial_uploads_every_hour(tmp_path):
    settings = load_settings({"artifact_root": str(tmp_path), "artifact_keys": "k1:" + "A" * 43 + "=",
                              "broker_url": "memory://"})
    staging = tmp_path / ".staging"
    staging.mkdir()
    stale = staging / "dead.part"
    stale.write_bytes(b"half an upload")
    old = stale.stat().st_mtime - 2 * 86_400
    os.utime(stale, (old, old))
    app = make_celery(settings)
    assert app.conf.beat_schedule["purge-stale-uploads"]["schedule"] == 3600
    assert app.tasks["workers.maintenance.purge_stale_uploads"].apply().get() == 1
    assert not stale.exists()
