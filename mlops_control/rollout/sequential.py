"""The statistics behind the canary checks.

Rate checks (errors, slow requests): a mixture sequential probability ratio test (mSPRT) on the
canary's share of "bad events". In a window where the canary served a share `w` of the requests,
each bad event comes from the canary with probability

    q(r) = r*w / (r*w + 1 - w)

where `r` is the ratio of the canary's bad-event rate to the stable's (exact for Poisson arrivals,
a close approximation for rare events). Conditioning on the number of bad events makes the test
free of the unknown baseline rate. For every alternative `r_k = tolerance*m_k` the log likelihood
ratio against `r0 = tolerance` is summed over windows; the evidence is the average of the
likelihood ratios (a uniform prior over the alternatives). Under the null (`r <= r0`) that average
is a non-negative supermartingale with mean <= 1, so by Ville's inequality

    P(evidence ever reaches 1/alpha) <= alpha

however often it is looked at and however the traffic share changes between windows: the false
rollback rate is bounded without fixing the sample size in advance, and a grossly bad canary
crosses 1/alpha after a handful of events.

Divergence check (predicted-probability distributions): the two-sample chi-square statistic
X2 = n_eff*sum(c_k - s_k)^2/pbar_k is, for small differences, n_eff times the population stability
index (PSI) between the two distributions, and follows a non-central chi-square with
non-centrality n_eff*PSI. "Canary diverges by more than the tolerance tau" is decided when X2 exceeds
the (1 - alpha_i) quantile of the non-central chi-square with non-centrality n_eff*tau, with
alpha_i = alpha*6/(pi^2*i^2) at the i-th look (the alpha-spending sums to alpha over any number of looks).
A new model whose predictions differ a little (PSI < tau) is not rolled back however much traffic
it serves; one that differs by more is caught as soon as the evidence is there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from mlops_core.drift import psi


def canary_share_probability(ratio: np.ndarray | float, share: float) -> np.ndarray:
    r = np.asarray(ratio, dtype=float)
    return r * share / (r * share + 1.0 - share)


def share_llr_increment(
    canary_events: int,
    stable_events: int,
    canary_share: float,
    tolerance: float,
    alternatives: tuple[float, ...],
) -> np.ndarray:
    """Log likelihood ratios (one per alternative) contributed by one window's bad events."""
    if canary_events + stable_events == 0 or not 0.0 < canary_share < 1.0:
        return np.zeros(len(alternatives))
    q0 = float(canary_share_probability(tolerance, canary_share))
    q1 = canary_share_probability(np.asarray(alternatives) * tolerance, canary_share)
    llr: np.ndarray = canary_events * np.log(q1 / q0) + stable_events * np.log(
        (1.0 - q1) / (1.0 - q0)
    )
    return llr


def log_evidence(llr: np.ndarray, weights: tuple[float, ...] | None = None) -> float:
    """Log of the mixture likelihood ratio: `weights` (summing to 1) over the alternatives, or
    uniform. Any fixed weights keep the mixture a supermartingale under the null, so the bound
    holds; they only move where the evidence comes fastest."""
    if weights is None:
        return float(logsumexp(llr) - math.log(len(llr)))
    return float(logsumexp(llr, b=np.asarray(weights)))


def requests_for_power(
    *,
    base_rate: float,
    canary_share: float,
    tolerance: float,
    ratio: float,
    alpha: float,
    power: float,
    aim_weight: float,
) -> int:
    """Canary requests after which the mSPRT on the canary's share of errors reaches 1/alpha
    with probability `power` when the canary's error rate is `ratio` x the stable's `base_rate`.

    Normal approximation of the log likelihood ratio of the aimed alternative: per canary request
    the window adds Poisson(ratio*base) canary errors worth log(q1/q0) each and
    Poisson(base*(1-w)/w) stable errors worth log((1-q1)/(1-q0)) each; the mixture over
    effect sizes, `aim_weight` of it on this one, costs at most log(1/aim_weight) of evidence.
    Solved for n in n*mean - z_power*sqrt(n*var) = log(1/alpha) + log(1/aim_weight).
    """
    if not 0.0 < canary_share < 1.0 or base_rate <= 0.0:
        raise ValueError("need a canary share in (0, 1) and a positive base error rate")
    q0 = float(canary_share_probability(tolerance, canary_share))
    q1 = float(canary_share_probability(ratio, canary_share))
    a, b = math.log(q1 / q0), math.log((1.0 - q1) / (1.0 - q0))
    canary_rate = ratio * base_rate
    stable_rate = base_rate * (1.0 - canary_share) / canary_share
    mean = canary_rate * a + stable_rate * b
    var = canary_rate * a * a + stable_rate * b * b
    if mean <= 0:
        raise ValueError(f"an error ratio of {ratio:g} is within the tolerance {tolerance:g}")
    target = math.log(1.0 / alpha) + math.log(1.0 / aim_weight)
    z = float(stats.norm.ppf(power))
    root = (z * math.sqrt(var) + math.sqrt(z * z * var + 4.0 * mean * target)) / (2.0 * mean)
    return math.ceil(root * root)


def spent_alpha(alpha: float, look: int) -> float:
    """The share of `alpha` spent at the `look`-th analysis (1-based); the series sums to alpha."""
    return alpha * 6.0 / (math.pi**2 * look**2)


@dataclass(frozen=True)
class DivergenceTest:
    psi: float  # canary vs stable predicted-probability distributions
    chi2: float
    df: int
    n_eff: float
    critical: float  # the chi2 value above which the divergence exceeds the tolerance
    exceeds: bool


def divergence_test(
    stable_counts: np.ndarray, canary_counts: np.ndarray, tolerance: float, alpha: float
) -> DivergenceTest:
    s = np.asarray(stable_counts, dtype=float)
    c = np.asarray(canary_counts, dtype=float)
    keep = (s + c) > 0
    s, c = s[keep], c[keep]
    n_s, n_c = s.sum(), c.sum()
    if n_s == 0 or n_c == 0 or len(s) < 2:
        return DivergenceTest(0.0, 0.0, 0, 0.0, math.inf, False)
    pooled = (s + c) / (n_s + n_c)
    n_eff = n_s * n_c / (n_s + n_c)
    chi2 = float(n_eff * np.sum((c / n_c - s / n_s) ** 2 / pooled))
    df = len(s) - 1
    critical = float(stats.ncx2.ppf(1.0 - alpha, df, n_eff * tolerance))
    return DivergenceTest(
        # Reported PSI: half a count added to every bucket, so an empty bucket in a small sample
        # does not read as a huge divergence (the decision itself uses chi2 above).
        psi=psi((s + 0.5) / (n_s + 0.5 * len(s)), c + 0.5),
        chi2=chi2,
        df=df,
        n_eff=float(n_eff),
        critical=critical,
        exceeds=chi2 > critical,
    )


def mean_confidence_sequence(
    n: float, mean: float, variance: float, alpha: float, tightest_at: float
) -> tuple[float, float]:
    """An interval for a mean that holds at every sample size at once (a confidence sequence).

    Robbins' normal mixture: with V = n*variance and mixing scale rho, the mixture martingale
    sqrt(rho/(V+rho)) * exp(S^2 / (2(V+rho))) of the centred sum S reaches 1/alpha with
    probability at most alpha (Ville), so |S| < sqrt((V+rho) log((V+rho)/(rho alpha^2))) at every
    n, however often it is looked at, and with sampling that adapts to what was seen (a bandit).
    The sample variance stands in for the true one (an asymptotic confidence sequence,
    Waudby-Smith et al. 2023); rho is set so the interval is tightest near `tightest_at` samples
    (Howard et al. 2021, eq. 3.12).
    """
    if n <= 0:
        return -math.inf, math.inf
    variance = max(variance, 1e-12)
    log_a = math.log(1.0 / alpha)
    rho = variance * max(tightest_at, 1.0) / (2.0 * log_a + math.log(1.0 + 2.0 * log_a))
    v = variance * n
    radius = math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha * alpha))) / n
    return mean - radius, mean + radius
