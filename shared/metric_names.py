"""Metric names as the platform stores them, whatever a user calls them: training optimises and
reports metrics by these names, and monitoring records them so. The product brief says `f1_score`."""

from __future__ import annotations

METRIC_ALIASES: dict[str, str] = {"f1_score": "f1"}


def canonical_metric(name: str) -> str:
    """The metric's own name for `name`, which may be an alias (f1_score -> f1); unknown names unchanged."""
    return METRIC_ALIASES.get(name, name)
