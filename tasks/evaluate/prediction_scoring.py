"""Scoring EEG seizure prediction: alarms from window probabilities, and their comparison with chance.

Pure functions: arrays and tables in, JSON-safe dicts out (``None`` where a number is undefined), in the
``metrics.json`` layout ``prediction.*``. Proportions are fractions in [0, 1]; rates say their unit.

An alarm at time ``a`` says "a seizure will start in ``[a + SPH, a + SPH + SOP]``" (Winterhalder et al. 2003,
Epilepsy Behav 4(3); Maiwald et al. 2004, Physica D 194). Alarms come from a smoothed probability crossing a
threshold, with a refractory period (:func:`alarms_from_probability`); the smoothing is the detector's own
(:func:`tasks.detection_scoring.smooth_probability`). The comparison with chance is the analytic random predictor of
Schelter et al. 2006 (Chaos 16, 013108; :func:`schelter_p_value`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from tasks.detection_scoring import ratio_or_none, smooth_probability
from tasks.metrics import choose_threshold
from tasks.time_intervals import EPS_S, as_intervals, measure_below, overlap_measure, subtract_intervals


def _fraction(num: float, den: float) -> float | None:
    r = ratio_or_none(num, den)
    return None if r is None else min(max(r, 0.0), 1.0)


def alarms_from_probability(
    times_s: np.ndarray,
    prob: np.ndarray,
    threshold: float | np.ndarray,
    smooth_windows: int = 1,
    refractory_s: float = 1800.0,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Alarm times from per-window preictal probabilities.

    The probability is smoothed (causal moving average over ``smooth_windows`` windows, restarted at every new
    ``segments`` value so it never averages across a gap in the recording); whenever the smoothed value is at or
    above ``threshold`` an alarm is raised, and then no other for ``refractory_s`` seconds (normally one SOP:
    the warning already covers that time). A probability that stays high therefore renews the warning every
    ``refractory_s``, so a predictor that is always on is also always in warning, which the chance comparison
    then penalises.

    Args:
        times_s: ``(N,)`` times at which each window's decision is available (its end), in seconds on one
            timeline, non-decreasing.
        prob: ``(N,)`` preictal probabilities.
        threshold: Scalar, or ``(N,)`` per window (e.g. each cross-validation fold's own threshold).
        smooth_windows: Windows in the moving average (1: none).
        refractory_s: Minimum time between two alarms, in seconds.
        segments: Optional ``(N,)`` labels of continuous stretches (e.g. recording or fold); smoothing restarts
            where the label changes.

    Returns:
        ``(n_alarms,)`` float64 alarm times in seconds.
    """
    t = np.asarray(times_s, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"times_s {t.shape} and prob {p.shape} must be 1-D of the same length")
    if t.size and np.any(np.diff(t) < 0):
        raise ValueError("times_s must be non-decreasing; sort the windows by time on their timeline first")
    if refractory_s < 0:
        raise ValueError(f"refractory_s={refractory_s}: must be >= 0")
    if segments is None:
        smoothed = smooth_probability(p, smooth_windows)
    else:
        seg = np.asarray(segments)
        starts = np.flatnonzero(np.concatenate([[True], seg[1:] != seg[:-1]])) if seg.size else np.array([], int)
        bounds = np.append(starts, seg.size)
        smoothed = np.concatenate(
            [smooth_probability(p[a:b], smooth_windows) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            or [np.zeros(0)]
        )
    candidates = t[smoothed >= np.asarray(threshold, dtype=np.float64)]
    alarms: list[float] = []
    i = 0
    while i < candidates.size:  # one iteration per alarm, not per window
        alarms.append(float(candidates[i]))
        nxt = int(np.searchsorted(candidates, candidates[i] + refractory_s - EPS_S, side="left"))
        i = max(nxt, i + 1)
    return np.asarray(alarms, dtype=np.float64)


def chance_prediction_probability(fpr_per_h: float, sop_s: float) -> float:
    """Probability that a Poisson random predictor with ``fpr_per_h`` alarms per hour predicts one seizure.

    A seizure is predicted when an alarm falls in the SOP-long interval ``[onset - SOP - SPH, onset - SPH]``; for
    a Poisson process of rate rho that happens with ``P = 1 - exp(-rho * SOP)`` (Schelter et al. 2006, Chaos 16,
    013108).

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


def schelter_p_value(
    n_seizures: int, n_predicted: int, fpr_per_h: float, sop_s: float, n_parameters: int = 1
) -> float | None:
    """Chance of predicting at least ``n_predicted`` of ``n_seizures`` seizures with a random predictor.

    Schelter et al. 2006 (Chaos 16, 013108): a random predictor raising alarms as a Poisson process with the
    method's false prediction rate rho predicts each seizure independently with ``P = 1 - exp(-rho * SOP)``, so the
    number it predicts is Binomial(n, P) and the probability of doing at least as well as the method is the
    binomial tail ``sum_{j >= k} C(n, j) P^j (1 - P)^(n - j)``. With ``d = n_parameters`` independently tuned
    settings (e.g. thresholds tried on test data) the chance that the best of d random predictors reaches k is
    ``1 - (1 - tail)^d``.

    Args:
        n_seizures: Seizures evaluated (n).
        n_predicted: Seizures the method predicted (k).
        fpr_per_h: Alarm rate rho of the random predictor per hour; :func:`prediction_scores` passes the false
            prediction rate over the interictal time during which an alarm could be raised (Schelter et al.).
        sop_s: Seizure occurrence period in seconds.
        n_parameters: d, the number of independently optimised parameters.

    Returns:
        The p-value in [0, 1]; ``None`` without seizures.
    """
    if n_seizures <= 0:
        return None
    if not 0 <= n_predicted <= n_seizures:
        raise ValueError(f"n_predicted={n_predicted} must be within [0, n_seizures={n_seizures}]")
    if n_parameters < 1:
        raise ValueError(f"n_parameters={n_parameters}: must be >= 1")
    p = chance_prediction_probability(fpr_per_h, sop_s)
    tail = float(np.clip(stats.binom.sf(n_predicted - 1, n_seizures, p), 0.0, 1.0))  # P(X >= k)
    return tail if n_parameters == 1 else float(1.0 - (1.0 - tail) ** n_parameters)


def random_predictor_sensitivity(
    n_seizures: int, fpr_per_h: float, sop_s: float, alpha: float = 0.05, n_parameters: int = 1
) -> float | None:
    """Highest sensitivity a random predictor with the same alarm rate reaches with probability above ``alpha``.

    The critical sensitivity of Schelter et al. 2006: ``k*/n`` with ``k*`` the largest k whose
    :func:`schelter_p_value` exceeds ``alpha`` (0 when none does). A method is better than chance at level alpha
    exactly when its sensitivity is above this value.

    Args:
        n_seizures: Seizures evaluated.
        fpr_per_h: Alarm rate of the random predictor per hour.
        sop_s: Seizure occurrence period in seconds.
        alpha: Significance level.
        n_parameters: See :func:`schelter_p_value`.

    Returns:
        Sensitivity in [0, 1]; ``None`` without seizures.
    """
    if n_seizures <= 0:
        return None
    ks = np.arange(1, n_seizures + 1)
    tail = stats.binom.sf(ks - 1, n_seizures, chance_prediction_probability(fpr_per_h, sop_s))
    p_values = 1.0 - (1.0 - np.clip(tail, 0.0, 1.0)) ** n_parameters
    above = ks[p_values > alpha]
    return float(above.max() / n_seizures) if above.size else 0.0


def _alarm_outcomes(alarms: np.ndarray, onsets: np.ndarray, sop_s: float, sph_s: float) -> tuple[int, np.ndarray]:
    """Seizures predicted, and the false alarms, of sorted ``alarms`` against sorted ``onsets`` (seconds).

    A seizure is predicted by an alarm in ``[onset - SOP - SPH, onset - SPH]``; an alarm is false when no onset lies
    in ``[a + SPH, a + SPH + SOP]``.
    """
    lo = np.searchsorted(alarms, onsets - sop_s - sph_s - EPS_S, side="left")
    hi = np.searchsorted(alarms, onsets - sph_s + EPS_S, side="right")
    n_predicted = int(np.sum(hi > lo))
    lo = np.searchsorted(onsets, alarms + sph_s - EPS_S, side="left")
    hi = np.searchsorted(onsets, alarms + sph_s + sop_s + EPS_S, side="right")
    return n_predicted, alarms[hi <= lo]


def prediction_scores(
    alarms: Sequence[float] | np.ndarray,
    seizure_onsets: Sequence[float] | np.ndarray,
    monitored_intervals: Iterable[Sequence[float]],
    sop_s: float,
    sph_s: float,
    *,
    refractory_s: float | None = None,
    excluded_intervals: Iterable[Sequence[float]] = (),
    window_labels: np.ndarray | None = None,
    window_scores: np.ndarray | None = None,
    alpha: float = 0.05,
    n_parameters: int = 1,
) -> dict[str, Any]:
    """Seizure-prediction performance of a set of alarms on one timeline, with the chance-level comparison.

    Definitions (times in seconds on one timeline):

    * a seizure is **predicted** when an alarm falls in ``[onset - SOP - SPH, onset - SPH]``, i.e. the warning
      ``[a + SPH, a + SPH + SOP]`` that the alarm starts contains the onset;
    * an alarm is **false** when no onset lies in its ``[a + SPH, a + SPH + SOP]`` (alarms inside
      ``excluded_intervals``, e.g. ictal and postictal time, are ignored);
    * **interictal time** is the monitored time minus ``[onset - SOP - SPH, onset]`` of every seizure and minus
      ``excluded_intervals``; ``fpr_per_h`` = false alarms / interictal hours;
    * **time in warning** is the share of monitored time inside some ``[a, a + SPH + SOP]``: from the alarm until
      its SOP ends the patient is under warning;
    * the chance level (:func:`schelter_p_value`) uses the false prediction rate over the interictal time *during
      which an alarm could be raised*, i.e. minus the refractory time after false alarms, as Schelter et al.
      2006 do; a predictor that is always in warning has no such time left, its random counterpart predicts every
      seizure and its p-value is 1.

    Args:
        alarms: Alarm times (:func:`alarms_from_probability`).
        seizure_onsets: Onsets of the seizures evaluated (the leading ones with preictal data).
        monitored_intervals: ``(start, end)`` stretches during which the predictor ran.
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        refractory_s: Dead time after an alarm; default ``sop_s``.
        excluded_intervals: Stretches that are neither interictal nor preictal (seizures, postictal zones).
        window_labels: Optional ``(N,)`` preictal (1) / interictal (0) labels for the window ROC AUC.
        window_scores: Optional ``(N,)`` window scores for the ROC AUC.
        alpha: Significance level for ``random_predictor_sensitivity``.
        n_parameters: Independently optimised parameters d (:func:`schelter_p_value`).

    Returns:
        ``sensitivity``, ``fpr_per_h``, ``time_in_warning``, ``roc_auc``, ``p_value``,
        ``random_predictor_sensitivity``, ``chance_probability`` (P per seizure), and the counts and durations
        that pool across timelines (:func:`pool_prediction_scores`): ``n_seizures``, ``n_predicted``,
        ``n_alarms``, ``n_false_alarms``, ``monitored_h``, ``interictal_h``, ``available_h``, ``warning_h``.
    """
    refractory = sop_s if refractory_s is None else float(refractory_s)
    a = np.sort(np.asarray(alarms, dtype=np.float64).ravel())
    onsets = np.sort(np.asarray(seizure_onsets, dtype=np.float64).ravel())
    monitored = as_intervals(monitored_intervals)
    excluded = as_intervals(excluded_intervals)
    if len(excluded):
        in_excluded = (measure_below(excluded, a + EPS_S) - measure_below(excluded, a - EPS_S)) > 0
        a = a[~in_excluded]

    n_predicted, false = _alarm_outcomes(a, onsets, sop_s, sph_s)
    preictal = as_intervals(np.column_stack([onsets - sop_s - sph_s, onsets]))
    interictal = subtract_intervals(subtract_intervals(monitored, preictal), excluded)
    monitored_s = float(np.sum(monitored[:, 1] - monitored[:, 0]))
    interictal_s = float(np.sum(interictal[:, 1] - interictal[:, 0]))
    dead = as_intervals(np.column_stack([false, false + refractory]))
    available_s = max(interictal_s - overlap_measure(interictal, dead), 0.0)
    warning = as_intervals(np.column_stack([a, a + sph_s + sop_s]))
    warning_s = overlap_measure(monitored, warning)
    counts = {
        "n_seizures": int(onsets.size),
        "n_predicted": n_predicted,
        "n_alarms": int(a.size),
        "n_false_alarms": int(false.size),
        "monitored_h": monitored_s / 3600.0,
        "interictal_h": interictal_s / 3600.0,
        "available_h": available_s / 3600.0,
        "warning_h": warning_s / 3600.0,
    }
    return _summarise(counts, sop_s, alpha, n_parameters, window_labels, window_scores)


def _window_auc(labels: np.ndarray | None, scores: np.ndarray | None) -> float | None:
    if labels is None or scores is None:
        return None
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"window_labels {y.shape} and window_scores {s.shape} must have the same shape")
    keep = (y == 0) | (y == 1)
    y, s = y[keep], s[keep]
    if np.unique(y).size < 2:
        return None
    return float(roc_auc_score(y, s))


def _summarise(
    counts: Mapping[str, float],
    sop_s: float,
    alpha: float,
    n_parameters: int,
    window_labels: np.ndarray | None,
    window_scores: np.ndarray | None,
) -> dict[str, Any]:
    n_sz, n_pred, n_false = int(counts["n_seizures"]), int(counts["n_predicted"]), int(counts["n_false_alarms"])
    available_h = float(counts["available_h"])
    if available_h > 0:
        chance_rate: float | None = n_false / available_h
    elif n_false > 0:
        chance_rate = math.inf  # always in warning: a random predictor is always in warning too
    else:
        chance_rate = None  # no interictal time: the rate cannot be estimated
    ok = chance_rate is not None and n_sz > 0
    return {
        "sensitivity": ratio_or_none(n_pred, n_sz),
        "fpr_per_h": ratio_or_none(n_false, float(counts["interictal_h"])),
        "time_in_warning": _fraction(float(counts["warning_h"]), float(counts["monitored_h"])),
        "roc_auc": _window_auc(window_labels, window_scores),
        "p_value": schelter_p_value(n_sz, n_pred, chance_rate, sop_s, n_parameters) if ok else None,
        "random_predictor_sensitivity": (
            random_predictor_sensitivity(n_sz, chance_rate, sop_s, alpha, n_parameters) if ok else None
        ),
        "chance_probability": chance_prediction_probability(chance_rate, sop_s) if chance_rate is not None else None,
        "alpha": float(alpha),
        **{k: (int(v) if k.startswith("n_") else float(v)) for k, v in counts.items()},
    }


def pool_prediction_scores(
    parts: Sequence[Mapping[str, Any]],
    sop_s: float,
    *,
    window_labels: np.ndarray | None = None,
    window_scores: np.ndarray | None = None,
    alpha: float = 0.05,
    n_parameters: int = 1,
) -> dict[str, Any]:
    """Pool :func:`prediction_scores` of several timelines (patients, folds): sum counts and hours, then ratios.

    Args:
        parts: Outputs of :func:`prediction_scores`.
        sop_s: Seizure occurrence period in seconds.
        window_labels: Optional labels of all windows, for a pooled ROC AUC.
        window_scores: Optional scores of all windows.
        alpha: Significance level for ``random_predictor_sensitivity``.
        n_parameters: See :func:`schelter_p_value`.

    Returns:
        The keys of :func:`prediction_scores`, computed from the summed counts.
    """
    keys = ("n_seizures", "n_predicted", "n_alarms", "n_false_alarms", "monitored_h", "interictal_h")
    keys += ("available_h", "warning_h")
    counts = {k: sum(float(p[k]) for p in parts) for k in keys}
    return _summarise(counts, sop_s, alpha, n_parameters, window_labels, window_scores)


def prediction_report(
    windows: pd.DataFrame,
    score: np.ndarray,
    threshold: float | np.ndarray,
    leading: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    smooth_windows: int = 1,
    refractory_s: float | None = None,
    alpha: float = 0.05,
    n_parameters: int = 1,
) -> dict[str, Any]:
    """The ``prediction`` section of ``metrics.json`` from scored test windows.

    Windows are grouped by timeline and cut into continuous stretches (a new stretch where a window starts after
    the previous one ended, or, with a ``fold`` column, where the fold changes); alarms are raised per timeline
    with :func:`alarms_from_probability` at each window's end time, the monitored time is the union of the
    stretches, and the seizures evaluated are the leading seizures whose preictal windows are among ``windows``.
    Results of the timelines are pooled (:func:`pool_prediction_scores`); the ROC AUC is over all windows.

    Args:
        windows: Test windows from :func:`tasks.label.windows.label_prediction` (``timeline``, ``t_start_s``,
            ``t_end_s``, ``pred_label``, ``lead_seizure_id``; optional ``fold``), e.g. every fold's test windows
            together with their out-of-fold scores.
        score: ``(N,)`` preictal probabilities.
        threshold: Scalar or ``(N,)`` (each fold's threshold, chosen on its training windows).
        leading: :func:`tasks.label.windows.leading_seizures` (``seizure_id``, ``timeline``, ``t_onset_s``).
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        smooth_windows: Moving-average length before thresholding.
        refractory_s: Dead time after an alarm (default ``sop_s``).
        alpha: Significance level for ``random_predictor_sensitivity``.
        n_parameters: See :func:`schelter_p_value`.

    Returns:
        :func:`pool_prediction_scores` of the timelines.
    """
    s = np.asarray(score, dtype=np.float64)
    if s.shape != (len(windows),):
        raise ValueError(f"score has shape {s.shape}, expected ({len(windows)},) to match the windows")
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), s.shape)
    refractory = sop_s if refractory_s is None else float(refractory_s)
    tested = set(windows.loc[windows["pred_label"] == 1, "lead_seizure_id"].astype(str))
    onsets = leading[leading["seizure_id"].astype(str).isin(tested)].groupby("timeline")["t_onset_s"]
    onsets_of = {str(k): v.to_numpy(dtype=float) for k, v in onsets}
    parts = []
    for timeline, idx in windows.groupby(windows["timeline"].astype(str), sort=True).indices.items():
        w = windows.iloc[idx]
        order = np.lexsort((w["t_start_s"].to_numpy(), w["t_end_s"].to_numpy()))
        idx = idx[order]
        start = windows["t_start_s"].to_numpy(dtype=float)[idx]
        end = windows["t_end_s"].to_numpy(dtype=float)[idx]
        new = np.concatenate([[True], start[1:] > np.maximum.accumulate(end)[:-1] + EPS_S])
        if "fold" in windows.columns:
            f = windows["fold"].to_numpy()[idx]
            new[1:] |= f[1:] != f[:-1]
        segment = np.cumsum(new)
        alarms = alarms_from_probability(end, s[idx], thr[idx], smooth_windows, refractory, segment)
        monitored = np.column_stack([start, end])
        parts.append(
            prediction_scores(
                alarms,
                onsets_of.get(timeline, np.zeros(0)),
                monitored,
                sop_s,
                sph_s,
                refractory_s=refractory,
                alpha=alpha,
                n_parameters=n_parameters,
            )
        )
    labels = windows["pred_label"].to_numpy()
    return pool_prediction_scores(
        parts, sop_s, window_labels=labels, window_scores=s, alpha=alpha, n_parameters=n_parameters
    )


def evaluate_prediction(
    windows: pd.DataFrame,
    fold_predictions: pd.DataFrame,
    leading: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    threshold_metric: str,
    smooth_windows: int,
    alpha: float,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per fold, a threshold from its held-out training fold; pooled out-of-fold alarms scored against chance."""
    labelled = windows.set_index("window_id")
    thresholds = {}
    parts = []
    for k, rows in fold_predictions.groupby("fold"):
        val = rows[rows["role"] == "val"]
        y_val = labelled.loc[val["window_id"], "pred_label"].to_numpy()
        thresholds[int(k)] = choose_threshold(y_val, val["score"].to_numpy(), threshold_metric)
        test = rows[rows["role"] == "test"]
        parts.append(
            labelled.loc[test["window_id"]]
            .reset_index()
            .assign(score=test["score"].to_numpy(), threshold=thresholds[int(k)])
        )
    oof = pd.concat(parts, ignore_index=True)
    report = prediction_report(
        oof, oof["score"].to_numpy(), oof["threshold"].to_numpy(), leading, sop_s, sph_s, smooth_windows, alpha=alpha
    )
    report["feasible"] = True
    report["sop_s"] = sop_s
    report["sph_s"] = sph_s
    report["fold_thresholds"] = thresholds
    report["threshold"] = float(np.median(list(thresholds.values())))
    per_patient = {}
    for patient, part in oof.groupby("patient"):
        part = part.reset_index(drop=True)
        per_patient[str(patient)] = prediction_report(
            part,
            part["score"].to_numpy(),
            part["threshold"].to_numpy(),
            leading,
            sop_s,
            sph_s,
            smooth_windows,
            alpha=alpha,
        )
    report["by_patient"] = per_patient
    return report, oof
