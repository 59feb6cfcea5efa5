"""The statistics of an A/B test, B against A, for the running tests and for numbers a user already has.

Per metric (`compare`) from each arm's aggregates (`RateArm`: units, conversions; `MeanArm`: units, mean,
variance): rates get the pooled two-proportion z-test, Newcomb's hybrid score interval for the difference
(Newcomb 1998, method 10) and P(B beats A) under Beta(1, 1) priors by quadrature; means get Welch's t-test
with the Welch-Satterthwaite degrees of freedom. Both get the relative lift (B - A) / |A| with a
delta-method interval, the always-valid p-value and confidence sequence of the mixture SPRT (Johari,
Koomen, Pekelis, Walsh: "Peeking at A/B tests", KDD 2017) and, given a margin, a guardrail's one-sided
non-inferiority test. Also: Holm's correction across success metrics, the sample ratio mismatch check and
the sample size for a minimum detectable effect as statsmodels' NormalIndPower solves it.

The mSPRT, d the difference and V its unpooled variance var_A / n_A + var_B / n_B: a N(0, tau^2) mixture
over the true difference gives log Lambda = 0.5 log(V / (V + tau^2)) + tau^2 d^2 / (2 V (V + tau^2)), and
p = min over looks of min(1, 1 / Lambda). The confidence sequence holds every theta not rejected,
Lambda(d - theta) < 1 / alpha, i.e. |d - theta| < sqrt(V (V + tau^2) / tau^2 (2 log(1 / alpha) +
log((V + tau^2) / V))), intersected over looks so that it excludes 0 exactly when the running p is below
alpha. V is the data's own (plug-in, as Johari et al. do), so a look counts only where it can be trusted
(`_rough_variance`): one bad look would otherwise live on in the running minimum.

Choosing `mixing_variance` (tau^2, in the squared units of the difference; the default 1e-4 is a difference
of 0.01, a percentage point of a rate): about the square of the smallest effect worth detecting. Why: the
boundary z^2 = d^2 / V > (1 + 1/r)(2 log(1/alpha) + log(1 + r)), r = tau^2 / V, is lowest near
r = 2 log(1/alpha) + log(1 + r), about 8 at alpha = 0.05, so the test is sharpest where V is near tau^2 / 8,
and an effect delta is detected with 80% power where V is near delta^2 / 15. Computed (alpha 0.05, 80% power
at the last look): tau^2 = delta^2 / 2 needs 1.92 times the fixed-horizon sample, delta^2 1.94 times,
delta^2 / 100 4.3 times, 100 delta^2 2.6 times: close is enough, and too large costs less than too small.
A metric in other units (latency in ms, revenue) needs its own tau^2.

Edge cases give finite numbers or None with the reason in `reasons` (field -> why), never NaN, inf or an
exception; input that describes no arm or no design raises ValueError. An arm without units (a mean: fewer
than two) is `insufficient_data`. Arms with no variation and the same estimate: statistic 0, p-value 1 (as
Fisher's exact test says). numpy and scipy only: statsmodels is the tests' reference, not a dependency.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from scipy import integrate, optimize, special, stats

PROPORTION, MEAN = "proportion", "mean"
DEFAULT_ALPHA = 0.05
DEFAULT_MIXING_VARIANCE = 1e-4
# The normal approximation on each arm's own variance (sequential test, rates' guardrail): see _rough_variance.
MIN_EVENTS = 5
MIN_UNITS = 30
SRM_P_VALUE = 0.001  # below it the split is not the one intended and the test's results are not to be trusted
# The posterior mass of B left out of the quadrature's range, on each side: far below the 1e-4 required.
POSTERIOR_TAIL = 1e-13


@dataclass(frozen=True)
class RateArm:
    """One arm of a rate metric: units and the units that converted."""
    n: float
    conversions: float

    def __post_init__(self):
        if not (math.isfinite(self.n) and math.isfinite(self.conversions) and 0 <= self.conversions <= self.n):
            raise ValueError("a rate arm needs 0 <= conversions <= n")

    @property
    def mean(self) -> float:
        return self.conversions / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """A unit's variance, p(1 - p): the unpooled (Wald) variance of the difference is built from it."""
        return self.mean * (1.0 - self.mean)


@dataclass(frozen=True)
class MeanArm:
    """One arm of a mean metric: units, their mean and their sample variance (ddof 1); n decides when n < 2."""
    n: float
    mean: float
    variance: float

    def __post_init__(self):
        # Squares are taken: a mean whose square overflows is no figure the tests can use.
        if not (math.isfinite(self.n) and self.n >= 0 and self.variance >= 0
                and math.isfinite(self.mean * self.mean + self.variance)):
            raise ValueError("a mean arm needs n >= 0, a finite mean and a finite variance >= 0")

    @classmethod
    def from_sums(cls, n: float, sum: float, sum_sq: float) -> MeanArm:
        mean = sum / n if n > 0 else 0.0
        squared_deviations = sum_sq - sum * mean
        if squared_deviations < -n * sys.float_info.epsilon * sum_sq:
            raise ValueError("sum_sq is below sum^2 / n, which no sample has")
        return cls(n, mean, _sample_variance(n, squared_deviations, sum_sq))

    @classmethod
    def from_mean_sd(cls, n: float, mean: float, sd: float) -> MeanArm:
        if not sd >= 0:
            raise ValueError("sd must be a number >= 0")
        return cls(n, mean, sd * sd)

    @classmethod
    def from_values(cls, values: Sequence[float]) -> MeanArm:
        array = np.asarray(values, dtype=float)
        if not np.all(np.isfinite(array)):
            raise ValueError("values must be finite numbers")
        mean = float(array.mean()) if array.size else 0.0
        return cls(array.size, mean, _sample_variance(array.size, float(np.sum((array - mean) ** 2)),
                                                      float(np.sum(array * array))))


def _sample_variance(n: float, squared_deviations: float, sum_sq: float) -> float:
    # Constant values leave rounding residue (up to about n * eps * sum_sq) rather than 0: counted as no
    # variation, or two constant arms would look infinitely significantly different.
    if n < 2 or squared_deviations <= n * sys.float_info.epsilon * sum_sq:
        return 0.0
    return squared_deviations / (n - 1)


@dataclass(frozen=True)
class NonInferiority:
    """A guardrail: is B worse than A by less than `margin` (absolute, in the metric's units)?"""
    margin: float
    lower_is_better: bool
    statistic: float | None  # positive where B is better than "worse by the margin"
    p_value: float | None  # one-sided, against "B is worse by the margin or more"
    confidence_bound: float | None  # the one-sided (1 - alpha) bound on B - A on the worse side
    passed: bool | None  # None: not enough data to say
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["pass"] = result.pop("passed")
        return result


@dataclass(frozen=True)
class Comparison:
    """One metric, B against A. `reasons` says why each figure that is None is None."""
    kind: str
    n_a: float
    n_b: float
    insufficient_data: bool
    estimate_a: float | None
    estimate_b: float | None
    difference: float | None  # B - A
    ci: tuple[float, float] | None
    relative_lift: float | None  # (B - A) / |A|: its sign is always the difference's
    ci_relative: tuple[float, float] | None
    statistic: float | None  # z for rates, t for means
    df: float | None  # Welch's degrees of freedom (means)
    p_value: float | None
    p_value_sequential: float | None
    ci_sequential: tuple[float, float] | None
    probability_b_beats_a: float | None = None  # rates
    guardrail: NonInferiority | None = None
    p_value_adjusted: float | None = None  # Holm, set by adjust_success_metrics
    p_value_sequential_adjusted: float | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        if self.guardrail is not None:
            result["guardrail"] = self.guardrail.as_dict()
        return result


def compare(a: RateArm | MeanArm, b: RateArm | MeanArm, *, alpha: float = DEFAULT_ALPHA,
            mixing_variance: float = DEFAULT_MIXING_VARIANCE, previous_p_value_sequential: float | None = None,
            previous_ci_sequential: tuple[float, float] | None = None, margin: float | None = None,
            lower_is_better: bool = False) -> Comparison:
    """Every figure of one metric at one look; the previous look's sequential p-value and interval carry on."""
    kind = _kind(a, b)
    _check_level(alpha)
    if not (math.isfinite(mixing_variance) and mixing_variance > 0):
        raise ValueError("mixing_variance must be a positive number")
    guardrail = (non_inferiority(a, b, margin=margin, lower_is_better=lower_is_better, alpha=alpha)
                 if margin is not None else None)
    common = {"kind": kind, "n_a": a.n, "n_b": b.n, "estimate_a": a.mean if a.n else None,
              "estimate_b": b.mean if b.n else None, "guardrail": guardrail}
    insufficient = _insufficient(a, b)
    if insufficient:
        # What earlier looks established stays: always-valid means valid at any later look too.
        untested = Comparison(**common, insufficient_data=True, difference=None, ci=None, relative_lift=None,
                              ci_relative=None, statistic=None, df=None, p_value=None,
                              p_value_sequential=previous_p_value_sequential, ci_sequential=previous_ci_sequential)
        kind_never = {"probability_b_beats_a"} if kind == MEAN else {"df"}
        return replace(untested, reasons={
            name: insufficient for name, value in vars(untested).items()
            if value is None and name not in kind_never | {"guardrail", "p_value_adjusted",
                                                           "p_value_sequential_adjusted"}})

    if kind == PROPORTION:
        (statistic, p_value, ci), df, test_reason = _pooled_z_test(a, b, alpha), None, None
        probability = probability_b_beats_a(a, b)
    else:
        statistic, p_value, ci, df, test_reason = _welch_test(a, b, alpha)
        probability = None
    lift, ci_lift, lift_reason = _relative_lift(a, b, alpha)
    p_sequential, ci_sequential, sequential_reason = _sequential(
        a, b, mixing_variance, alpha, previous_p_value_sequential, previous_ci_sequential)
    reasons = {name: reason for reason, figures in [
        (test_reason, {"statistic": statistic, "p_value": p_value, "ci": ci, "df": df}),
        (lift_reason, {"relative_lift": lift, "ci_relative": ci_lift}),
        (sequential_reason, {"p_value_sequential": p_sequential, "ci_sequential": ci_sequential}),
    ] if reason for name, value in figures.items() if value is None}
    return Comparison(**common, insufficient_data=False, difference=b.mean - a.mean, ci=ci, relative_lift=lift,
                      ci_relative=ci_lift, statistic=statistic, df=df, p_value=p_value,
                      p_value_sequential=p_sequential, ci_sequential=ci_sequential,
                      probability_b_beats_a=probability, reasons=reasons)


def _kind(a: RateArm | MeanArm, b: RateArm | MeanArm) -> str:
    kind = {(RateArm, RateArm): PROPORTION, (MeanArm, MeanArm): MEAN}.get((type(a), type(b)))
    if kind is None:
        raise ValueError("both arms must be rate arms or both mean arms")
    return kind


def _check_level(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")


def _insufficient(a: RateArm | MeanArm, b: RateArm | MeanArm) -> str | None:
    if not a.n or not b.n:
        return "an arm has no units yet"
    if isinstance(a, MeanArm) and min(a.n, b.n) < 2:
        return "a mean needs at least two units per arm for its variance"
    return None


def _variance_of_difference(a: RateArm | MeanArm, b: RateArm | MeanArm) -> float:
    return a.variance / a.n + b.variance / b.n


def _pooled_z_test(a: RateArm, b: RateArm, alpha: float):
    """(z, p, Newcomb's interval): the interval from each arm's Wilson score interval (Newcomb 1998, method 10)."""
    difference, z = b.mean - a.mean, float(stats.norm.isf(alpha / 2))
    (low_a, high_a), (low_b, high_b) = (_wilson_interval(arm, z) for arm in (a, b))
    ci = (difference - math.hypot(b.mean - low_b, high_a - a.mean),
          difference + math.hypot(high_b - b.mean, a.mean - low_a))
    pooled = (a.conversions + b.conversions) / (a.n + b.n)
    standard_error = math.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n))
    if standard_error == 0:  # both arms all failures or all successes: the same rate, nothing to test
        return 0.0, 1.0, ci
    statistic = difference / standard_error
    return statistic, float(2 * stats.norm.sf(abs(statistic))), ci


def _wilson_interval(arm: RateArm, z: float) -> tuple[float, float]:
    p, n = arm.mean, arm.n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def _welch_test(a: MeanArm, b: MeanArm, alpha: float):
    """(t, p, ci, df, reason): Welch (1947) with Satterthwaite's (1946) degrees of freedom."""
    difference, variance = b.mean - a.mean, _variance_of_difference(a, b)
    if variance == 0:
        if difference == 0:
            return 0.0, 1.0, None, None, "neither arm varies: the interval would be a point"
        return None, None, None, None, "neither arm varies yet their means differ: t is undefined"
    standard_error, df = math.sqrt(variance), _welch_df(a, b)
    t, critical = difference / standard_error, float(stats.t.isf(alpha / 2, df))
    ci = (difference - critical * standard_error, difference + critical * standard_error)
    return t, float(2 * stats.t.sf(abs(t), df)), ci, df, None


def _welch_df(a: MeanArm, b: MeanArm) -> float:
    # (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1)) in shares of v_a + v_b: tiny v's squared underflow.
    share_a = a.variance / a.n / _variance_of_difference(a, b)
    return 1 / (share_a ** 2 / (a.n - 1) + (1 - share_a) ** 2 / (b.n - 1))


def _relative_lift(a: RateArm | MeanArm, b: RateArm | MeanArm, alpha: float):
    """((B - A) / |A|, its delta-method interval, reason): Var = (v_B + (B / A)^2 v_A) / A^2, v a mean's variance."""
    if a.mean == 0:
        return None, None, "estimate_a is zero: a lift relative to it is undefined"
    lift = (b.mean - a.mean) / abs(a.mean)
    spread_a, spread_b = math.sqrt(a.variance / a.n), math.sqrt(b.variance / b.n)
    standard_error = math.hypot(spread_b, b.mean / a.mean * spread_a) / abs(a.mean)
    if standard_error == 0:
        return lift, None, "neither arm varies: the delta method gives no interval"
    half = float(stats.norm.isf(alpha / 2)) * standard_error
    return lift, (lift - half, lift + half), None


def sequential_p_value(difference, variance, mixing_variance, previous=1.0):
    """min(previous, 1 / Lambda), the mSPRT's always-valid p-value after this look; numpy arrays welcome."""
    log_ratio = (0.5 * np.log(variance / (variance + mixing_variance))
                 + mixing_variance * np.square(difference) / (2 * variance * (variance + mixing_variance)))
    return np.minimum(previous, np.exp(np.minimum(-log_ratio, 0.0)))  # exp(-log_ratio) alone could overflow


def sequential_half_width(variance, mixing_variance, alpha):
    """Half the width of the look's confidence sequence: where Lambda(d - theta) reaches 1 / alpha."""
    return np.sqrt(variance * (variance + mixing_variance) / mixing_variance
                   * (2 * np.log(1 / alpha) + np.log((variance + mixing_variance) / variance)))


def _rough_variance(a: RateArm | MeanArm, b: RateArm | MeanArm) -> str | None:
    """Why the arms' own variances cannot stand in for the true ones in a normal approximation, if they cannot.

    A rate of 0 out of 10 has variance 0: against a large arm the unpooled z would be enormous and, carried
    by the running minimum, one such look would decide the test for good. Hence the textbook rule of at
    least MIN_EVENTS conversions and non-conversions per arm; a mean needs MIN_UNITS per arm.
    """
    if isinstance(a, RateArm):
        if min(a.conversions, a.n - a.conversions, b.conversions, b.n - b.conversions) < MIN_EVENTS:
            return f"an arm has fewer than {MIN_EVENTS} conversions or non-conversions: its variance is too rough"
    elif min(a.n, b.n) < MIN_UNITS:
        return f"an arm has fewer than {MIN_UNITS} units: its variance is too rough"
    if _variance_of_difference(a, b) == 0:
        return "neither arm varies: the test needs a variance"
    return None


def _sequential(a, b, mixing_variance, alpha, previous_p, previous_ci):
    """(running p, running interval, reason) after this look."""
    rough = _rough_variance(a, b)
    if rough:
        return previous_p, previous_ci, rough
    difference, variance = b.mean - a.mean, _variance_of_difference(a, b)
    p_value = float(sequential_p_value(difference, variance, mixing_variance,
                                       1.0 if previous_p is None else previous_p))
    half = float(sequential_half_width(variance, mixing_variance, alpha))
    low, high = difference - half, difference + half
    if previous_ci is not None:
        low, high = max(low, previous_ci[0]), min(high, previous_ci[1])
        if low > high:
            return p_value, None, "the looks' intervals no longer overlap: the effect is not constant over time"
    return p_value, (low, high), None


def probability_b_beats_a(a: RateArm, b: RateArm) -> float:
    """P(rate_B > rate_A) under independent Beta(1 + conversions, 1 + failures) posteriors (Beta(1, 1) priors).

    The integral of B's posterior density times A's distribution function, by adaptive quadrature over all
    but 2 * POSTERIOR_TAIL of B's posterior, split at A's extreme quantiles and median so that quad finds
    A's step even when A's posterior is far narrower than B's (a 99/1 split).
    """
    if a.mean + b.mean > 1:
        # Posteriors crowding 1, where floating point cannot tell 1 - 1e-20 from 1, are integrated near 0
        # instead: B's rate beats A's exactly when A's failure rate beats B's.
        return probability_b_beats_a(RateArm(b.n, b.n - b.conversions), RateArm(a.n, a.n - a.conversions))
    alpha_a, beta_a = 1 + a.conversions, 1 + a.n - a.conversions
    alpha_b, beta_b = 1 + b.conversions, 1 + b.n - b.conversions
    log_norm_b = special.betaln(alpha_b, beta_b)

    def integrand(x: float) -> float:
        log_density = special.xlogy(alpha_b - 1, x) + special.xlog1py(beta_b - 1, -x) - log_norm_b
        return math.exp(log_density) * special.betainc(alpha_a, beta_a, x)

    # Upper quantiles as 1 - the mirrored lower ones: betaincinv(.., 1 - 1e-13) would round.
    low = special.betaincinv(alpha_b, beta_b, POSTERIOR_TAIL)
    high = 1 - special.betaincinv(beta_b, alpha_b, POSTERIOR_TAIL)
    turns = [special.betaincinv(alpha_a, beta_a, POSTERIOR_TAIL), special.betaincinv(alpha_a, beta_a, 0.5),
             1 - special.betaincinv(beta_a, alpha_a, POSTERIOR_TAIL)]
    points = [point for point in turns if low < point < high]
    value = integrate.quad(integrand, low, high, points=points or None, epsabs=1e-11, epsrel=1e-10, limit=200)[0]
    return min(1.0, max(0.0, value))


def non_inferiority(a: RateArm | MeanArm, b: RateArm | MeanArm, *, margin: float, lower_is_better: bool = False,
                    alpha: float = DEFAULT_ALPHA) -> NonInferiority:
    """One-sided test that B - A is above -margin (lower being better: below +margin), with the unpooled SE.

    Rates: z (as statsmodels' test_proportions_2indep, method "wald", at value -margin); means: Welch's t.
    """
    kind = _kind(a, b)
    _check_level(alpha)
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError("margin must be a number >= 0")
    reason = _insufficient(a, b) or (_rough_variance(a, b) if kind == PROPORTION else None)  # t allows for few
    if reason or _variance_of_difference(a, b) == 0:
        return NonInferiority(margin, lower_is_better, None, None, None, None,
                              reason or "neither arm varies: the test needs a variance")
    # Oriented so that positive is better for B: the null is "B is worse by margin or more".
    sign = -1.0 if lower_is_better else 1.0
    standard_error = math.sqrt(_variance_of_difference(a, b))
    statistic = (sign * (b.mean - a.mean) + margin) / standard_error
    distribution = stats.norm() if kind == PROPORTION else stats.t(_welch_df(a, b))
    p_value, critical = float(distribution.sf(statistic)), float(distribution.isf(alpha))
    bound = b.mean - a.mean - sign * critical * standard_error
    return NonInferiority(margin, lower_is_better, statistic, p_value, bound, p_value < alpha)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's (1979) step-down adjusted p-values, as statsmodels' multipletests(method="holm").

    A metric without a p-value stays None but counts in the family as p = 1: it was meant to be tested,
    and leaving it out would make the correction laxer than planned.
    """
    filled = np.array([1.0 if p is None else p for p in p_values], dtype=float)
    m = filled.size
    order = np.argsort(filled, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * filled[order]))
    return [None if p is None else float(q) for p, q in zip(p_values, adjusted)]


def adjust_success_metrics(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The success metrics with Holm-adjusted p-values, fixed-horizon and sequential.

    Holm needs only valid p-values, and always-valid ones are valid at any look, so the adjusted sequential
    p-values may decide a test with several success metrics.
    """
    fixed = holm([comparison.p_value for comparison in comparisons])
    sequential = holm([comparison.p_value_sequential for comparison in comparisons])
    return [replace(comparison, p_value_adjusted=p, p_value_sequential_adjusted=q)
            for comparison, p, q in zip(comparisons, fixed, sequential)]


@dataclass(frozen=True)
class SampleRatio:
    chi2: float | None
    df: int
    p_value: float | None
    flagged: bool
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_ratio_mismatch(counts: Sequence[float], weights: Sequence[float]) -> SampleRatio:
    """Pearson's chi-square goodness of fit of the arms' unit counts to the intended weights (any scale)."""
    observed, weights = np.asarray(counts, dtype=float), np.asarray(weights, dtype=float)
    if observed.size < 2 or observed.shape != weights.shape:
        raise ValueError("counts and weights need one entry per arm, at least two arms")
    if not (np.all(np.isfinite(weights)) and np.all(weights > 0) and np.all(np.isfinite(observed))
            and np.all(observed >= 0)):
        raise ValueError("weights must be positive and counts non-negative")
    df, total = observed.size - 1, observed.sum()
    if total == 0:
        return SampleRatio(None, df, None, False, "no units assigned yet")
    expected = total * weights / weights.sum()
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    p_value = float(stats.chi2.sf(chi2, df))
    return SampleRatio(chi2, df, p_value, p_value < SRM_P_VALUE)


@dataclass(frozen=True)
class SampleSize:
    n_a: int
    n_b: int
    total: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_size(kind: str, *, baseline_rate: float | None = None, mde_relative: float | None = None,
                sd: float | None = None, delta: float | None = None, alpha: float = DEFAULT_ALPHA,
                power: float = 0.8, ratio: float = 1.0, alternative: str = "two-sided") -> SampleSize:
    """Units per arm to detect the effect, as statsmodels' NormalIndPower().solve_power finds them, rounded up.

    The effect is Cohen's h for rates (proportion_effectsize(baseline * (1 + mde_relative), baseline)) and
    Cohen's d = delta / sd for means; ratio is n_b / n_a; "larger" is the one-sided test that B is higher.
    """
    if kind == PROPORTION and baseline_rate is not None and mde_relative is not None:
        rate_b = baseline_rate * (1 + mde_relative)
        if not (0 < baseline_rate < 1 and 0 < rate_b < 1):
            raise ValueError("baseline_rate and baseline_rate * (1 + mde_relative) must lie in (0, 1)")
        effect = 2 * math.asin(math.sqrt(rate_b)) - 2 * math.asin(math.sqrt(baseline_rate))
    elif kind == MEAN and sd is not None and delta is not None and sd > 0:
        effect = delta / sd
    else:
        raise ValueError("a rate needs baseline_rate and mde_relative; a mean needs sd > 0 and delta")
    _check_level(alpha)
    if alternative not in ("two-sided", "larger") or not (alpha < power < 1 and 0 < ratio < math.inf):
        raise ValueError("alternative is two-sided or larger, power lies in (alpha, 1), ratio is positive")
    if effect == 0 or (alternative == "larger" and effect < 0):
        raise ValueError("no sample size detects this effect with this alternative")
    # statsmodels' normal_power: "larger" is one tail at alpha, solved in closed form; two-sided adds the
    # far tail at alpha / 2, so it is solved for, below the one-tail answer. Its power is symmetric in the sign.
    effect, critical = abs(effect), stats.norm.isf(alpha / 2 if alternative == "two-sided" else alpha)
    nobs = ((critical + stats.norm.ppf(power)) / effect) ** 2
    if alternative == "two-sided":
        def shortfall(trial: float) -> float:
            shift = effect * math.sqrt(trial)
            return stats.norm.sf(critical - shift) + stats.norm.cdf(-critical - shift) - power
        nobs = optimize.brentq(shortfall, 1e-12 * nobs, nobs, xtol=1e-12 * nobs, rtol=1e-14)
    n_a = nobs * (1 + 1 / ratio)  # NormalIndPower's nobs is the effective 1 / (1 / n_a + 1 / n_b)
    n_a_units, n_b_units = math.ceil(n_a), math.ceil(n_a * ratio)
    return SampleSize(n_a_units, n_b_units, n_a_units + n_b_units)
