"""Gunicorn hooks for every service's web process: a worker that stops closes its app first.

A worker stops on shutdown and when the autoscaler takes one away (TTOU). Closing the app runs what
its services registered in Runtime.closers: serving's prediction log sends what it still buffers, so
a worker's last 100 ms of predictions are not lost with it.
"""

from __future__ import annotations


def close_app(wsgi) -> None:
    """Close the platform app inside `wsgi` (the app itself, or make run's Forward around it)."""
    app = getattr(wsgi, "app", wsgi)
    runtime = getattr(app, "extensions", {}).get("modelyard")
    if runtime is not None:
        runtime.close()


def worker_exit(server, worker) -> None:
    close_app(getattr(worker, "wsgi", None))
