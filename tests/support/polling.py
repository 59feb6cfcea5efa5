"""Waiting in tests: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
