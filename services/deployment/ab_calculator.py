"""The A/B statistics on numbers a user already has: the three calls GrowthBook's and Evan Miller's
calculators answer, computed by the same module (shared/ab_statistics.py) as the running tests' results.

numpy and scipy are imported on the first call, not with the web app: most of deployment's requests never
need them.
"""

from __future__ import annotations

from typing import Any

from shared.errors import ValidationFailed


def _arm(statistics, kind: str, arm: dict[str, Any]):
    if kind == statistics.PROPORTION:
        return statistics.RateArm(arm["n"], arm["conversions"])
    if "values" in arm:
        return statistics.MeanArm.from_values(arm["values"])
    if "sum" in arm:
        return statistics.MeanArm.from_sums(arm["n"], arm["sum"], arm["sum_sq"])
    return statistics.MeanArm.from_mean_sd(arm["n"], arm["mean"], arm["sd"])


def analyse(body: dict[str, Any]) -> dict[str, Any]:
    """One metric's figures, B against A, at a single look."""
    from shared import ab_statistics as statistics

    try:
        arms = {name: _arm(statistics, body["kind"], arm) for name, arm in body["arms"].items()}
        return statistics.compare(arms["A"], arms["B"], alpha=body["alpha"], mixing_variance=body["mixing_variance"],
                                  margin=body["margin"], lower_is_better=body["lower_is_better"]).as_dict()
    except ValueError as exc:  # sums that describe no sample (sum_sq below sum^2 / n), squares that overflow
        raise ValidationFailed(f"The arms describe no sample: {exc}.", errors={"arms": [str(exc)]}) from None


def sample_ratio(body: dict[str, Any]) -> dict[str, Any]:
    from shared import ab_statistics as statistics

    weights = body["weights"] or [1.0] * len(body["counts"])
    return statistics.sample_ratio_mismatch(body["counts"], weights).as_dict()


def sample_size(body: dict[str, Any]) -> dict[str, Any]:
    from shared import ab_statistics as statistics

    try:
        return statistics.sample_size(**body).as_dict()
    except ValueError as exc:  # an effect of zero, a rate pushed out of (0, 1), power below alpha
        raise ValidationFailed(f"No sample size answers this design: {exc}.", errors={"_schema": [str(exc)]}) from None
