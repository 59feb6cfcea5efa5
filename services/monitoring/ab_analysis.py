"""An A/B test's analysis: each look's figures (GET /api/v1/ab-tests/<id>/results) and the verdict it reaches.

A look reads both arms' sums over the test's window (ab_hours.py: kept per hour, so that only the hours that
changed since the last look are read again; ab_arms.py: the SQL), makes each metric's arms (ab_measures.py)
and tests them with shared.ab_statistics at the test's alpha: the sample ratio mismatch of the units against
the intended weights (1 - traffic_split, traffic_split), each success metric (Holm's correction across them,
for the fixed-horizon and the always-valid p-values), each guardrail as non-inferiority with its margin (a
relative margin is that share of A's estimate at the look). The always-valid p-value and interval of each
metric carry from the previous look (stored: tables.ABTestLook), so their running minimum and intersection
survive restarts.

tau^2 (the mixture's variance, in the squared units of the difference) per metric: the test's
`mixing_variance` for metrics whose figures are shares (accuracy, precision, recall, f1, error_rate: its
default, 1e-4, is a percentage point); for any other (latency in ms, mae, rmse, a custom metric) the square of
the effect that matters in its units: a guardrail's absolute margin, else its relative margin, or for a success
metric the test's `minimum_detectable_effect` (DEFAULT_RELATIVE_EFFECT when not given), times A's estimate
(A's standard deviation where the estimate is 0). It is fixed at the first look where both arms have the
MIN_UNITS the sequential test needs, and carried from then on: the mSPRT is valid for a tau^2 that does not
change with the data it tests.

The verdict, only once both arms have min_sample_size units (or at max_duration_days):
- invalid: a sample ratio mismatch (p < 0.001): the split is not the one intended, and nothing can be trusted;
  or a guardrail breached: its always-valid interval of B - A lies wholly beyond the margin on the worse side
  (valid however often the test is looked at).
- a success metric is decisive when its Holm-adjusted always-valid p-value is below alpha; better for B or for A
  by the side of 0 its always-valid interval lies on (and whether lower is better). All decisive ones for A:
  a_wins. All for B: b_wins, unless a guardrail blocks it: one whose non-inferiority test fails at this look
  (`pass` false: not shown within its margin yet) or that has no data at all; then the test runs on, until the
  guardrail passes, is breached, or the test ends. A guardrail that cannot be tested for want of events (no
  errors in either arm: too few for the normal approximation) does not block. Some decisive for each arm:
  no_difference, with a summary naming the trade-off (a running minimum never rises again, so waiting would not
  resolve it; a person weighs it).
- at max_duration_days without a verdict: no_difference (the sequential reading: a fixed-horizon test at the
  end would spend alpha again on data already tested at every look); or invalid when B was better but a
  guardrail still blocked it.
Why a guardrail's breach is read from the always-valid interval and not from `pass`: at min_sample_size a
non-inferiority test often lacks the power to pass (a noisy business metric with a 5% margin), and failing to
pass is no evidence that B is worse.

A verdict reached is announced once (abtest.decided, in the look's transaction): the deployment service
concludes the test. Looks are taken by beat's sweep every ANALYSE_EVERY_SECONDS (workers/abtest.py) until a
verdict, and once more after the test ended (that look closes its window at the end), and on GET when the latest
look is older than that and was not taken after the test ended or was decided.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring import ab_arms, ab_hours
from services.monitoring.ab_arms import utc
from services.monitoring.ab_measures import LOWER_IS_BETTER, METHODS, OPERATING, QUALITY, SHARES, measure
from services.monitoring.service import ANALYSE_EVERY_SECONDS
from services.monitoring.tables import ABTestAnalysis, ABTestLook
from shared import ab_statistics as stats
from shared.db import select_for_update
from shared.errors import NotFound
from shared.events.outbox import emit

PRODUCER = "monitoring"
B_WINS, A_WINS, NO_DIFFERENCE, INVALID = "b_wins", "a_wins", "no_difference", "invalid"
DEFAULT_RELATIVE_EFFECT = 0.05
SUCCESS, GUARDRAIL = "success", "guardrail"
HOLDS, BREACHED, UNDECIDED = "holds", "breached", "undecided"


def _latest(session: Session, test_id: uuid.UUID) -> ABTestLook | None:
    return session.scalars(sa.select(ABTestLook).where(ABTestLook.ab_test_id == test_id)
                           .order_by(ABTestLook.looked_at.desc()).limit(1)).first()


def _fresh(test: ABTestAnalysis, look: ABTestLook | None, now: datetime) -> bool:
    """Whether `look` still answers: younger than the sweep's period, or taken after the test ended or was decided
    (nothing changes after that)."""
    if look is None:
        return False
    looked_at, finished = utc(look.looked_at), test.ended_at or test.decided_at
    return looked_at >= now - timedelta(seconds=ANALYSE_EVERY_SECONDS) or (finished is not None
                                                                          and looked_at >= utc(finished))


def latest_results(*, session: Session, test_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The test's latest look while fresh, else a new one; NotFound for a test monitoring never heard of."""
    test = session.get(ABTestAnalysis, test_id)
    if test is None:
        raise NotFound(f"No A/B test with id {test_id} has started: monitoring analyses a test once it runs.")
    latest = _latest(session, test_id)
    if _fresh(test, latest, now):
        return latest.results
    test = lock(session, test_id)
    latest = _latest(session, test_id)  # a look another request or task took while this one waited
    return latest.results if _fresh(test, latest, now) else take_look(session, test, now=now)


def lock(session: Session, test_id: uuid.UUID) -> ABTestAnalysis | None:
    """The test's row, locked until commit: one look at a time, so that each carries the one before."""
    return session.scalar(select_for_update(session, sa.select(ABTestAnalysis).where(
        ABTestAnalysis.ab_test_id == test_id)))


def looked_since(session: Session, test_id: uuid.UUID, moment: datetime) -> bool:
    """Whether the test was looked at at `moment` or since."""
    return session.scalar(sa.select(sa.exists().where(ABTestLook.ab_test_id == test_id,
                                                      ABTestLook.looked_at >= moment)))


def _due():
    """A test beat's sweep looks at: running without a verdict, or ended since its last look (its last look then
    closes its window)."""
    return sa.or_(sa.and_(ABTestAnalysis.ended_at.is_(None), ABTestAnalysis.decided_at.is_(None)),
                  sa.and_(ABTestAnalysis.ended_at.is_not(None), ABTestAnalysis.computed_until.is_not(None)))


def due_tests(session: Session) -> list[uuid.UUID]:
    """The tests beat's sweep looks at."""
    return list(session.scalars(sa.select(ABTestAnalysis.ab_test_id).where(_due()).order_by(ABTestAnalysis.started_at)))


def lock_due(session: Session, test_id: uuid.UUID) -> ABTestAnalysis | None:
    """The test's row, locked, if the sweep is still to look at it."""
    return session.scalar(select_for_update(session, sa.select(ABTestAnalysis).where(
        ABTestAnalysis.ab_test_id == test_id, _due())))


def take_look(session: Session, test: ABTestAnalysis, *, now: datetime) -> dict[str, Any]:
    """Compute the test's figures over its window as of `now` and store them; announce a verdict reached. The
    caller holds the test's row (`lock`)."""
    until = min(now, utc(test.ended_at)) if test.ended_at else now
    if test.traffic_from is None:
        test.traffic_from = ab_arms.first_traffic(session, test, until=until)
    since = utc(test.traffic_from) if test.traffic_from else None
    sums = (ab_hours.arm_sums(session, test, since=since, until=until) if since is not None
            else {arm: ab_arms.ArmSums() for arm in ab_arms.ARMS})
    if test.ended_at is not None:
        ab_hours.finish(session, test)
    previous = _latest(session, test.ab_test_id)
    carried = {(entry["role"], entry["name"]): entry for entry in previous.results["metrics"]} if previous else {}
    custom = [name for name in test.success_metrics + [g["name"] for g in test.guardrail_metrics]
              if name not in QUALITY + OPERATING]
    recorded = ab_arms.recorded_sums(session, test.ab_test_id, sorted(set(custom)))
    units = {arm: sums[arm].units for arm in ab_arms.ARMS}
    weights = [0.5, 0.5] if test.type == "shadow" else [1 - test.traffic_split, test.traffic_split]
    srm = stats.sample_ratio_mismatch([units["A"], units["B"]], weights)

    success = [_compare(test, name, None, sums, recorded, carried) for name in test.success_metrics]
    adjusted = stats.adjust_success_metrics([comparison for comparison, _ in success])
    metrics = [_entry(name, SUCCESS, comparison, extra) for name, comparison, (_, extra)
               in zip(test.success_metrics, adjusted, success)]
    for guardrail in test.guardrail_metrics:
        comparison, extra = _compare(test, guardrail["name"], guardrail, sums, recorded, carried)
        metrics.append(_entry(guardrail["name"], GUARDRAIL, comparison, extra))

    results = {
        "ab_test_id": str(test.ab_test_id), "name": test.name, "looked_at": now.isoformat(),
        "window": {"start": since.isoformat() if since else None, "end": until.isoformat()},
        "insufficient_data": not min(units.values()), "min_sample_size": test.min_sample_size, "units": units,
        "srm": {**srm.as_dict(), "weights": weights}, "metrics": metrics, "decision": None,
    }
    if test.verdict is None and test.ended_at is None:
        decision = decide(test, results, now=now)
        if decision is not None:
            test.verdict, test.summary, test.decided_at = *decision, now
            emit(session, "abtest.decided", {"ab_test_id": test.ab_test_id, "verdict": test.verdict,
                                             "summary": test.summary, "decided_at": now}, producer=PRODUCER)
    if test.verdict is not None:
        results["decision"] = {"verdict": test.verdict, "summary": test.summary}
    session.add(ABTestLook(ab_test_id=test.ab_test_id, looked_at=now, results=results))
    return results


def _compare(test: ABTestAnalysis, name: str, guardrail: dict[str, Any] | None, sums: dict[str, ab_arms.ArmSums],
             recorded: dict, carried: dict) -> tuple[stats.Comparison, dict[str, Any]]:
    """The metric's comparison at this look, and what its entry says beside the Comparison's fields."""
    measured = measure(name, sums["A"], sums["B"], recorded)
    a, b = measured.a, measured.b
    lower = guardrail["lower_is_better"] if guardrail else name in LOWER_IS_BETTER
    before = carried.get((GUARDRAIL if guardrail else SUCCESS, name), {})
    tau = before.get("mixing_variance") or _mixing_variance(test, name, guardrail, a, b)
    margin = None
    if guardrail and not guardrail["relative"]:
        margin = guardrail["margin"]
    elif guardrail and a.n:  # a share of A's estimate: none before A has one
        margin = guardrail["margin"] * abs(a.mean)
    previous_ci = before.get("ci_sequential")
    comparison = stats.compare(a, b, alpha=test.significance_level, mixing_variance=tau or test.mixing_variance,
                               previous_p_value_sequential=before.get("p_value_sequential"),
                               previous_ci_sequential=tuple(previous_ci) if previous_ci else None,
                               margin=margin, lower_is_better=lower)
    extra = {"method": METHODS[measured.method], "lower_is_better": lower, "mixing_variance": tau}
    if guardrail:
        extra.update(margin=margin, relative_margin=guardrail["margin"] if guardrail["relative"] else None,
                     status=_status(comparison.ci_sequential, margin, lower))
    return comparison, extra


def _mixing_variance(test: ABTestAnalysis, name: str, guardrail: dict[str, Any] | None, a, b) -> float | None:
    """tau^2 for the metric (the module's doc); None while it cannot be fixed yet (then the sequential test cannot
    run either: an arm has fewer than MIN_UNITS, or neither varies nor has a mean other than 0)."""
    if name in SHARES:
        return test.mixing_variance
    if guardrail and not guardrail["relative"] and guardrail["margin"] > 0:
        return guardrail["margin"] ** 2
    if min(a.n, b.n) < stats.MIN_UNITS:
        return None
    share = (guardrail["margin"] if guardrail and guardrail["relative"] and guardrail["margin"] > 0
             else test.minimum_detectable_effect or DEFAULT_RELATIVE_EFFECT)
    scale = next((value for value in (abs(a.mean), math.sqrt(a.variance), abs(b.mean), math.sqrt(b.variance))
                  if value > 0), 0.0)
    return (share * scale) ** 2 or None


def _status(interval: tuple[float, float] | None, margin: float | None, lower_is_better: bool) -> str:
    """Whether the always-valid interval of B - A lies wholly within the guardrail's margin, wholly beyond it on the
    worse side, or neither yet."""
    if interval is None or margin is None:
        return UNDECIDED
    # Oriented so that "worse" is below -margin.
    low, high = (-interval[1], -interval[0]) if lower_is_better else interval
    if high < -margin:
        return BREACHED
    return HOLDS if low > -margin else UNDECIDED


def _entry(name: str, role: str, comparison: stats.Comparison, extra: dict[str, Any]) -> dict[str, Any]:
    figures = comparison.as_dict()
    for interval in ("ci", "ci_relative", "ci_sequential"):
        figures[interval] = list(figures[interval]) if figures[interval] is not None else None
    return {"name": name, "role": role, **extra, **figures}


def decide(test: ABTestAnalysis, results: dict[str, Any], *, now: datetime) -> tuple[str, str] | None:
    """The verdict a look's results reach, with its summary; None while the test should run on (module's doc)."""
    units, alpha = results["units"], test.significance_level
    ended = now >= utc(test.started_at) + timedelta(days=test.max_duration_days)
    reached = min(units.values()) >= test.min_sample_size
    if not (reached or ended):
        return None
    counted = f"{units['A']:,} units in A, {units['B']:,} in B"
    srm = results["srm"]
    if srm["flagged"]:
        return INVALID, (f"Invalid: the units split {units['A']:,} (A) to {units['B']:,} (B), not the "
                         f"{srm['weights'][0]:.0%}/{srm['weights'][1]:.0%} intended (sample ratio mismatch, chi-square "
                         f"p = {srm['p_value']:.2g}): the assignment or the records are broken, so no figure of this "
                         "test can be trusted.")
    guardrails = [entry for entry in results["metrics"] if entry["role"] == GUARDRAIL]
    breached = [entry for entry in guardrails if entry["status"] == BREACHED]
    if breached:
        entry = breached[0]
        return INVALID, (f"Invalid: B breached the {entry['name']} guardrail: {_figure(entry['estimate_b'])} against "
                         f"A's {_figure(entry['estimate_a'])}, worse by more than its margin of {_figure(entry['margin'])} "
                         f"(always-valid interval of B - A: {_interval(entry['ci_sequential'])}); {counted}.")
    decisive = [entry for entry in results["metrics"] if entry["role"] == SUCCESS
                and entry["p_value_sequential_adjusted"] is not None and entry["p_value_sequential_adjusted"] < alpha]
    better = [entry for entry in decisive if _better_for_b(entry)]
    worse = [entry for entry in decisive if not _better_for_b(entry)]
    if better and worse:
        return NO_DIFFERENCE, (f"No winner: B is better on {_names(better)} but worse on {_names(worse)} (always-valid "
                               f"p-values, Holm-corrected, below {alpha:g}): a trade-off to weigh by hand; {counted}.")
    if worse:
        return A_WINS, f"A wins: {_findings(worse)}; {counted}."
    blocking = [entry for entry in guardrails if _blocks(entry)]
    if better and not blocking:
        held = "; no guardrail failed its margin" if guardrails else ""
        return B_WINS, f"B wins: {_findings(better)}{held}; {counted}."
    if not ended:
        return None
    if better:
        return INVALID, (f"Invalid: B was better ({_findings(better)}), but {_names(blocking)} could not be shown "
                         f"within its margin by the end of the test ({test.max_duration_days} days); {counted}.")
    short = "" if reached else f" (below the {test.min_sample_size:,} per arm planned)"
    return NO_DIFFERENCE, (f"No difference: after {test.max_duration_days} days no success metric differed at alpha "
                           f"{alpha:g} (always-valid p-values, Holm-corrected); {counted}{short}.")


def _blocks(entry: dict[str, Any]) -> bool:
    """Whether a guardrail keeps B from winning at this look: not shown within its margin, or without data."""
    return entry["insufficient_data"] or (entry["guardrail"] or {}).get("pass") is False


def _better_for_b(entry: dict[str, Any]) -> bool:
    """Whether a decisive metric favours B: the side of 0 its always-valid interval (or its difference) lies on."""
    interval = entry["ci_sequential"]
    higher = (interval[0] > 0) if interval else entry["difference"] > 0
    return higher != entry["lower_is_better"]


def _findings(entries: list[dict[str, Any]]) -> str:
    return "; ".join(f"{entry['name']} {_figure(entry['estimate_b'])} in B against {_figure(entry['estimate_a'])} in A"
                     + (f" ({entry['relative_lift']:+.1%})" if entry["relative_lift"] is not None else "")
                     + f", always-valid p = {entry['p_value_sequential_adjusted']:.2g} after Holm's correction"
                     for entry in entries)


def _names(entries: list[dict[str, Any]]) -> str:
    return ", ".join(entry["name"] for entry in entries)


def _figure(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _interval(interval: list[float] | None) -> str:
    return "none" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"
