"""Exact 95 % confidence intervals for the counts EEG scoring reports: sensitivities and event rates.

A sensitivity of 9/9 and one of 90/90 are the same point value but very different evidence, and a false-alarm
rate measured over 10 h says little about 24 h. Both prediction scoring (evaluate stage) and detection scoring
(ground floor, also used by the synth stage) put these intervals next to their point values, so they live here.

* Proportions: Clopper & Pearson 1934 (Biometrika 26(4)), the exact binomial interval from beta quantiles.
* Rates: the exact Poisson interval (Garwood 1936, Biometrika 28) from chi-square quantiles, divided by the
  exposure (hours monitored).
"""

from __future__ import annotations

from scipy import stats


def clopper_pearson(k: int, n: int, level: float = 0.95) -> list[float] | None:
    """Exact binomial interval for ``k`` successes in ``n`` trials, as ``[low, high]`` fractions.

    Args:
        k: Successes (e.g. seizures predicted), ``0 <= k <= n``.
        n: Trials (seizures evaluated).
        level: Coverage, e.g. 0.95.

    Returns:
        ``[low, high]`` in [0, 1]; ``None`` when ``n == 0`` (no interval without trials).
    """
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be within [0, n={n}]")
    a = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1.0 - a, k + 1, n - k))
    return [low, high]


def poisson_rate_interval(count: int, exposure: float, level: float = 0.95) -> list[float] | None:
    """Exact Poisson interval for an event rate: ``count`` events over ``exposure`` units (hours, days).

    Args:
        count: Events observed (false alarms), ``>= 0``.
        exposure: Time observed, in the unit the rate is per (e.g. hours for FP/h, days for FP/24 h).
        level: Coverage, e.g. 0.95.

    Returns:
        ``[low, high]`` rates per unit of ``exposure``; ``None`` when ``exposure <= 0``.
    """
    if exposure <= 0:
        return None
    if count < 0:
        raise ValueError(f"count={count}: must be >= 0")
    a = (1.0 - level) / 2.0
    low = 0.0 if count == 0 else float(stats.chi2.ppf(a, 2 * count)) / 2.0
    high = float(stats.chi2.ppf(1.0 - a, 2 * count + 2)) / 2.0
    return [low / exposure, high / exposure]
