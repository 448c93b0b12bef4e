"""The formulas of the continuous-deployment paper for dynamic materialization and scheduling.

Materialization utilization (§3.2.2). With N the number of raw chunks, n the chunks existing at a
sampling operation, m the materialized feature chunks the budget holds and s the sample size, the
materialized chunks in a sample are hypergeometric with mean s·m/n, so MUₙ = 1 when n ≤ m, else m/n
(uniform sampling), and the average over one sampling per incoming chunk is

    MU = (m + Σ_{n=m+1..N} m/n) / N = m(1 + H_N − H_m) / N ≈ m(1 + ln N − ln(m+1)) / N     (4)

(the paper writes H_N − H_{m+1} next to the sum; the sum Σ_{n=m+1..N} 1/n is H_N − H_m exactly, and
its approximation keeps ln(m+1)). Window-based sampling over the last w chunks (m < w):

    MU = (m + Σ_{n=m+1..w} m/n + (N − w) m/w) / N ≈ m(1 + ln w − ln(m+1) + (N − w)/w) / N       (5)

and MU = 1 when m ≥ w. :func:`mu_uniform` and :func:`mu_window` give the exact sums (``exact=True``)
or the paper's approximations.

The dynamic scheduler (§4.1): the next proactive training runs T′ = S · T · p_r · p_l seconds after
the previous one, T its duration, p_r the prediction rate (items/s), p_l the prediction latency (s/item),
S ≥ 1 the slack (:func:`dynamic_interval`).
"""

from __future__ import annotations

import math

from modelstore.errors import DeploymentError


def harmonic(t: int) -> float:
    """H_t = 1 + 1/2 + … + 1/t (H_0 = 0), summed from the small terms up."""
    return math.fsum(1.0 / k for k in range(1, t + 1))


def mu_n(n: int, m: int, w: int | None = None) -> float:
    """MUₙ: the expected materialized share of a sample when n chunks exist (w: the window, if any)."""
    if n <= m:
        return 1.0
    if w is not None and w <= m:
        return 1.0
    if w is not None and n > w:
        return m / w
    return m / n


def mu_uniform(N: int, m: int, *, exact: bool = True) -> float:
    """Formula (4): the average MU of uniform sampling over N chunks with m materialized."""
    if m >= N:
        return 1.0
    if exact:
        return m * (1.0 + harmonic(N) - harmonic(m)) / N
    return m * (1.0 + math.log(N) - math.log(m + 1)) / N


def mu_window(N: int, m: int, w: int, *, exact: bool = True) -> float:
    """Formula (5): the average MU of window-based sampling (window of w chunks)."""
    if m >= w or m >= N:
        return 1.0
    if exact:
        top = min(w, N)
        return (m + m * (harmonic(top) - harmonic(m)) + max(N - w, 0) * m / w) / N
    return m * (1.0 + math.log(w) - math.log(m + 1) + (N - w) / w) / N


def dynamic_interval(slack: float, training_seconds: float, prediction_rate: float,
                     prediction_latency: float) -> float:
    """Formula (6): T′ = S · T · p_r · p_l."""
    for name, v in (("slack", slack), ("training_seconds", training_seconds), ("prediction_rate", prediction_rate),
                    ("prediction_latency", prediction_latency)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise DeploymentError(f"{name} must be a finite number >= 0, got {v!r} instead")
    return float(slack) * float(training_seconds) * float(prediction_rate) * float(prediction_latency)


__all__ = ["dynamic_interval", "harmonic", "mu_n", "mu_uniform", "mu_window"]
