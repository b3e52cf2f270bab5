"""Is a seizure predictor better than chance? Two tests on the pseudo-prospective alarms of
:mod:`tasks.evaluate.prediction_scoring`.

* **Analytic random predictor** (Schelter et al. 2006, Chaos 16, 013108): a random predictor predicts each seizure
  independently with probability ``P``, so the number it predicts is Binomial(n, P) and the p-value is the binomial
  tail at the method's count. Schelter et al. take ``P = 1 - exp(-rho * SOP)`` with rho the method's *false* alarm
  rate; with zero false alarms that gives ``P = 0`` and ``p = 0`` for a single lucky alarm, which made chance look
  significant (18 % of random-score runs at alpha = 0.05 on a leave-one-seizure-out layout). Here ``P`` is the
  share of monitored time the method's alarms actually cover with an occurrence window ``[a + SPH, a + SPH + SOP]``,
  counting every alarm, true or false: the chance that a seizure placed at random would fall inside a warning of
  the method. It is never 0 when an alarm was raised, and it charges a method for the time it spends warning.
* **Seizure-time surrogates** (Andrzejak et al. 2003, Phys Rev E 67, 010901): keep the alarms, move the seizure
  onsets to random times (uniform over the times an onset could have been evaluated: monitored, with SOP + SPH of
  the timeline before it, outside ictal and postictal time) and count how often the surrogate seizures are
  predicted at least as often as the real ones. Assumption-light: no Poisson model of the alarms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from tasks.time_intervals import EPS_S, as_intervals, subtract_intervals


def chance_prediction_probability(fpr_per_h: float, sop_s: float) -> float:
    """Probability that a Poisson random predictor with ``fpr_per_h`` alarms per hour predicts one seizure.

    A seizure is predicted when an alarm falls in the SOP-long interval ``[onset - SOP - SPH, onset - SPH]``; for
    a Poisson process of rate rho that happens with ``P = 1 - exp(-rho * SOP)`` (Schelter et al. 2006).

    Args:
        fpr_per_h: The alarm rate rho of the random predictor, per hour (``inf`` gives 1).
        sop_s: Seizure occurrence period in seconds.

    Returns:
        P in [0, 1].
    """
    if fpr_per_h < 0 or sop_s < 0:
        raise ValueError(f"fpr_per_h={fpr_per_h}, sop_s={sop_s}: must be >= 0")
    if math.isinf(fpr_per_h):
        return 1.0
    return float(-math.expm1(-fpr_per_h * sop_s / 3600.0))


def binomial_p_value(n_seizures: int, n_predicted: int, chance: float, n_parameters: int = 1) -> float | None:
    """Chance of predicting at least ``n_predicted`` of ``n_seizures`` seizures when each is predicted with
    probability ``chance``: the binomial tail, corrected for ``n_parameters`` independently tuned settings as
    ``1 - (1 - tail)^d`` (Schelter et al. 2006).

    Returns:
        The p-value in [0, 1]; ``None`` without seizures.
    """
    if n_seizures <= 0:
        return None
    if not 0 <= n_predicted <= n_seizures:
        raise ValueError(f"n_predicted={n_predicted} must be within [0, n_seizures={n_seizures}]")
    if n_parameters < 1:
        raise ValueError(f"n_parameters={n_parameters}: must be >= 1")
    if not 0.0 <= chance <= 1.0:
        raise ValueError(f"chance={chance}: must be a probability in [0, 1]")
    tail = float(np.clip(stats.binom.sf(n_predicted - 1, n_seizures, chance), 0.0, 1.0))  # P(X >= k)
    return tail if n_parameters == 1 else float(1.0 - (1.0 - tail) ** n_parameters)


def schelter_p_value(
    n_seizures: int, n_predicted: int, fpr_per_h: float, sop_s: float, n_parameters: int = 1
) -> float | None:
    """:func:`binomial_p_value` with Schelter et al.'s Poisson chance level from an alarm rate per hour."""
    return binomial_p_value(n_seizures, n_predicted, chance_prediction_probability(fpr_per_h, sop_s), n_parameters)


def random_predictor_sensitivity(
    n_seizures: int, chance: float, alpha: float = 0.05, n_parameters: int = 1
) -> float | None:
    """Highest sensitivity a random predictor with per-seizure probability ``chance`` reaches with probability
    above ``alpha``: ``k*/n`` with ``k*`` the largest k whose :func:`binomial_p_value` exceeds ``alpha`` (0 when none
    does; Schelter et al. 2006's critical sensitivity). A method is better than chance at level alpha exactly when
    its sensitivity is above this value. ``None`` without seizures."""
    if n_seizures <= 0:
        return None
    ks = np.arange(1, n_seizures + 1)
    tail = stats.binom.sf(ks - 1, n_seizures, chance)
    p_values = 1.0 - (1.0 - np.clip(tail, 0.0, 1.0)) ** n_parameters
    above = ks[p_values > alpha]
    return float(above.max() / n_seizures) if above.size else 0.0


def onset_positions(monitored: np.ndarray, excluded: np.ndarray, horizon_s: float) -> np.ndarray:
    """Where a surrogate onset may fall on one timeline: monitored time at least ``horizon_s`` (SOP + SPH) after
    the timeline's first monitored second, outside ``excluded`` (ictal and postictal) time. ``(n, 2)`` intervals."""
    m = as_intervals(monitored)
    if not len(m):
        return m
    allowed = subtract_intervals(m, np.array([[m[0, 0] - 1.0, m[0, 0] + horizon_s]]))
    return subtract_intervals(allowed, as_intervals(excluded))


def _draw_positions(intervals: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Uniform draws over the union of ``intervals`` (inverse of the cumulative length)."""
    lengths = intervals[:, 1] - intervals[:, 0]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    u = rng.random(size) * cum[-1]
    i = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(lengths) - 1)
    return intervals[i, 0] + (u - cum[i])


def surrogate_p_value(
    timelines: Sequence[tuple[np.ndarray, int, np.ndarray]],
    n_predicted: int,
    sop_s: float,
    sph_s: float,
    n_surrogates: int = 1000,
    seed: int = 0,
) -> float | None:
    """Seizure-time surrogate p-value (Andrzejak et al. 2003): how often randomly placed seizures are predicted by
    the method's alarms at least as often as the real ones.

    Args:
        timelines: Per timeline ``(sorted alarm times, seizures evaluated on it, onset positions)`` with the
            positions from :func:`onset_positions`.
        n_predicted: Real seizures predicted, over all timelines.
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        n_surrogates: Surrogate data sets; the p-value's resolution is ``1 / (n_surrogates + 1)``.
        seed: Seed of the placements.

    Returns:
        ``(1 + #{surrogates predicting >= n_predicted}) / (n_surrogates + 1)``; ``None`` without seizures or
        without room for a surrogate onset.
    """
    rng = np.random.default_rng(seed)
    counts = np.zeros(n_surrogates, dtype=np.int64)
    n_total = 0
    for alarms, n_seizures, positions in timelines:
        if n_seizures == 0:
            continue
        if not len(positions) or float(np.sum(positions[:, 1] - positions[:, 0])) <= 0:
            return None
        n_total += n_seizures
        onsets = _draw_positions(positions, (n_surrogates, n_seizures), rng)
        lo = np.searchsorted(alarms, onsets - sop_s - sph_s - EPS_S, side="left")
        hi = np.searchsorted(alarms, onsets - sph_s + EPS_S, side="right")
        counts += (hi > lo).sum(axis=1)
    if n_total == 0:
        return None
    return float((1 + np.sum(counts >= n_predicted)) / (n_surrogates + 1))
