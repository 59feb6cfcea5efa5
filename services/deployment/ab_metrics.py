"""The metrics an A/B test may name, and how a name the user gives becomes one the test knows.

Built in: the model's quality from monitoring's joined actuals (accuracy, precision, recall, f1 for a
classifier; rmse and mae for a regressor) and the endpoint's operating metrics (latency, error_rate).
Any other name is a custom metric the user records per arm through monitoring's metrics API (the brief's
`business_impact`), higher being better unless the guardrail says otherwise. A name a letter or two away
from a built-in one is taken for a typo and refused, rather than quietly becoming a custom metric that
nobody records.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from shared.errors import ValidationFailed

CLASSIFICATION = ("accuracy", "precision", "recall", "f1")
REGRESSION = ("rmse", "mae")
OPERATING = ("latency", "error_rate")
QUALITY = {"classification": CLASSIFICATION, "regression": REGRESSION, "forecasting": REGRESSION}
# The brief's spellings.
ALIASES = {"f1_score": "f1", "latency_ms": "latency"}
CUSTOM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Default:
    """What a guardrail on the metric holds to when its request says nothing more."""

    lower_is_better: bool
    margin: float  # absolute, in the metric's units; or relative to A's estimate when `relative`
    relative: bool


# Rates may be worse by a percentage point, an error rate by one in a hundred requests; means by a tenth
# of A's (latency, errors' size) or a twentieth (anything the user records).
DEFAULTS = {
    **{name: Default(False, 0.01, False) for name in CLASSIFICATION},
    **{name: Default(True, 0.10, True) for name in REGRESSION},
    "latency": Default(True, 0.10, True),
    "error_rate": Default(True, 0.01, False),
}
CUSTOM_DEFAULT = Default(False, 0.05, True)


def metric_name(given: str, model_type: str, field: str) -> str:
    """The test's name for `given`; a 422 naming `field` for a metric of the other model type or a typo."""
    name = ALIASES.get(given, given)
    if name in QUALITY.get(model_type, ()) or name in OPERATING:
        return name
    if name in CLASSIFICATION + REGRESSION:
        raise ValidationFailed(f"{given!r} is not a metric of a {model_type} model.",
                               errors={field: [f"{given!r} is not a metric of a {model_type} model; its metrics "
                                               f"are {', '.join(QUALITY.get(model_type, ()) + OPERATING)}."]})
    if not CUSTOM_NAME.fullmatch(name):
        raise ValidationFailed(f"{given!r} cannot be a metric's name.",
                               errors={field: [f"{given!r}: a custom metric's name is lower case letters, digits and "
                                               "underscores, starting with a letter, at most 64 characters."]})
    known = QUALITY.get(model_type, ()) + OPERATING + tuple(ALIASES)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    if close:
        raise ValidationFailed(f"Unknown metric {given!r}: did you mean {close[0]!r}?",
                               errors={field: [f"Unknown metric {given!r}: did you mean {close[0]!r}?"]})
    return name


def success_metrics(given: list[str], model_type: str) -> list[str]:
    names = [metric_name(name, model_type, "success_metrics") for name in given]
    if len(set(names)) != len(names):
        raise ValidationFailed("A success metric is named twice.", errors={"success_metrics": ["Named twice."]})
    return names


def guardrails(given: list[str | dict[str, Any]], model_type: str) -> list[dict[str, Any]]:
    """Each guardrail as {name, margin, relative, lower_is_better}: a bare name takes its metric's defaults."""
    found = []
    for entry in given:
        entry = {"name": entry} if isinstance(entry, str) else entry
        name = metric_name(entry["name"], model_type, "guardrail_metrics")
        default = DEFAULTS.get(name, CUSTOM_DEFAULT)
        if entry.get("margin") is not None:
            margin, relative = entry["margin"], False
        elif entry.get("relative_margin") is not None:
            margin, relative = entry["relative_margin"], True
        else:
            margin, relative = default.margin, default.relative
        lower = entry.get("lower_is_better")
        found.append({"name": name, "margin": margin, "relative": relative,
                      "lower_is_better": default.lower_is_better if lower is None else lower})
    if len({guardrail["name"] for guardrail in found}) != len(found):
        raise ValidationFailed("A guardrail metric is named twice.", errors={"guardrail_metrics": ["Named twice."]})
    return found
