"""The serving benchmark's breaking version: a model that passes the health checks and fails real traffic.

Uploaded as a pickle (the benchmark's stack allows them), so its class must be importable by the stack's
processes from the repository root: that is this module. An uploaded version has no training profile, so
the health checks' smoke rows are all zeros; breast_cancer's rows are not, and on them it raises.
"""

from __future__ import annotations


class BreaksOnRealTraffic:
    def predict(self, rows):
        import numpy as np

        if np.asarray(rows, dtype=float).any():
            raise RuntimeError("this version breaks on real traffic")
        return np.zeros(len(rows))
