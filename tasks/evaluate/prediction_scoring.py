"""Scoring EEG seizure prediction pseudo-prospectively: alarms from a continuous stream of window probabilities,
and their comparison with chance.

Pure functions: arrays and tables in, JSON-safe dicts out (``None`` where a number is undefined), in the
``metrics.json`` layout ``prediction.*``. Proportions are fractions in [0, 1]; rates say their unit.

An alarm at time ``a`` says "a seizure will start in ``[a + SPH, a + SPH + SOP]``" (Winterhalder et al. 2003,
Epilepsy Behav 4(3); Maiwald et al. 2004, Physica D 194). Every test recording is scored whole, in time order, by
the fold model that never saw it (:func:`evaluate_prediction`): the probability is smoothed causally over the
recording (the first ``smooth_windows - 1`` windows of a recording are a warm-up that raises no alarm), alarms are
raised where the smoothed value reaches the fold's threshold (chosen on the smoothed stream of the fold's
validation recordings, never on its test recordings), with a refractory period of one SOP. False alarms are counted
over interictal time: monitored time minus ``[onset - SOP - SPH, onset]`` of every seizure and minus ictal and
postictal time ``[onset, offset + postictal_s]`` (alarms raised inside ictal or postictal time are ignored).
Counts and hours are pooled over all scored recordings. The comparison with chance is in
:mod:`tasks.evaluate.prediction_significance`; the window ROC AUC over labelled windows is a secondary number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from tasks.confidence_intervals import clopper_pearson, poisson_rate_interval
from tasks.detection_scoring import ratio_or_none, smooth_probability
from tasks.evaluate.prediction_significance import (
    binomial_p_value,
    chance_prediction_probability,
    onset_positions,
    random_predictor_sensitivity,
    schelter_p_value,
    surrogate_p_value,
)
from tasks.metrics import choose_threshold
from tasks.time_intervals import EPS_S, as_intervals, measure_below, overlap_measure, subtract_intervals

__all__ = [
    "alarms_from_probability",
    "chance_prediction_probability",
    "evaluate_prediction",
    "pool_prediction_scores",
    "prediction_report",
    "prediction_scores",
    "random_predictor_sensitivity",
    "schelter_p_value",
    "smooth_stream",
]


def _fraction(num: float, den: float) -> float | None:
    r = ratio_or_none(num, den)
    return None if r is None else min(max(r, 0.0), 1.0)


def smooth_stream(prob: np.ndarray, smooth_windows: int = 1, segments: np.ndarray | None = None) -> np.ndarray:
    """Causal moving average over ``smooth_windows`` windows, restarted at every new ``segments`` value (a new
    recording, a gap), with the first ``smooth_windows - 1`` windows of each segment set to NaN: a warm-up in which
    the average is not yet full and no decision (alarm, threshold choice) is made. Without it each segment's first
    window would be a raw, unsmoothed score, which raises more alarms than the smoothed stream it belongs to.

    Args:
        prob: ``(N,)`` probabilities in time order.
        smooth_windows: Windows averaged (1: none, no warm-up).
        segments: Optional ``(N,)`` labels of continuous stretches.

    Returns:
        ``(N,)`` float64, NaN during warm-ups.
    """
    p = np.asarray(prob, dtype=np.float64)
    seg = np.zeros(p.size, dtype=np.int64) if segments is None else np.asarray(segments)
    if seg.shape != p.shape:
        raise ValueError(f"segments {seg.shape} and prob {p.shape} must have the same shape")
    starts = np.flatnonzero(np.concatenate([[True], seg[1:] != seg[:-1]])) if seg.size else np.array([], int)
    out = np.empty_like(p)
    for a, b in zip(starts, np.append(starts[1:], seg.size), strict=True):
        out[a:b] = smooth_probability(p[a:b], smooth_windows)
        out[a : min(b, a + smooth_windows - 1)] = np.nan
    return out


def alarms_from_probability(
    times_s: np.ndarray,
    prob: np.ndarray,
    threshold: float | np.ndarray,
    smooth_windows: int = 1,
    refractory_s: float = 1800.0,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Alarm times from per-window preictal probabilities.

    The probability is smoothed (:func:`smooth_stream`: causal, restarted at every new ``segments`` value, no
    decision during each segment's warm-up); whenever the smoothed value is at or above ``threshold`` an alarm is
    raised, and then no other for ``refractory_s`` seconds (normally one SOP: the warning already covers that
    time). A probability that stays high therefore renews the warning every ``refractory_s``, so a predictor that
    is always on is also always in warning, which the chance comparison then penalises.

    Args:
        times_s: ``(N,)`` times at which each window's decision is available (its end), in seconds on one
            timeline, non-decreasing.
        prob: ``(N,)`` preictal probabilities.
        threshold: Scalar, or ``(N,)`` per window (e.g. each cross-validation fold's own threshold).
        smooth_windows: Windows in the moving average (1: none).
        refractory_s: Minimum time between two alarms, in seconds.
        segments: Optional ``(N,)`` labels of continuous stretches (e.g. recording).

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
    smoothed = smooth_stream(p, smooth_windows, segments)
    with np.errstate(invalid="ignore"):
        candidates = t[smoothed >= np.asarray(threshold, dtype=np.float64)]  # NaN (warm-up) never alarms
    alarms: list[float] = []
    i = 0
    while i < candidates.size:  # one iteration per alarm, not per window
        alarms.append(float(candidates[i]))
        nxt = int(np.searchsorted(candidates, candidates[i] + refractory_s - EPS_S, side="left"))
        i = max(nxt, i + 1)
    return np.asarray(alarms, dtype=np.float64)


def _outside(times: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """``times`` that do not fall inside the sorted, disjoint ``excluded`` intervals."""
    if not len(excluded):
        return times
    inside = (measure_below(excluded, times + EPS_S) - measure_below(excluded, times - EPS_S)) > 0
    return times[~inside]


def _alarm_outcomes(
    alarms: np.ndarray, onsets: np.ndarray, all_onsets: np.ndarray, sop_s: float, sph_s: float
) -> tuple[int, np.ndarray]:
    """Seizures of ``onsets`` predicted, and the false alarms, of sorted ``alarms`` (seconds).

    A seizure is predicted by an alarm in ``[onset - SOP - SPH, onset - SPH]``; an alarm is false when no onset of
    ``all_onsets`` (every seizure, evaluated or not) lies in ``[a + SPH, a + SPH + SOP]``.
    """
    lo = np.searchsorted(alarms, onsets - sop_s - sph_s - EPS_S, side="left")
    hi = np.searchsorted(alarms, onsets - sph_s + EPS_S, side="right")
    n_predicted = int(np.sum(hi > lo))
    lo = np.searchsorted(all_onsets, alarms + sph_s - EPS_S, side="left")
    hi = np.searchsorted(all_onsets, alarms + sph_s + sop_s + EPS_S, side="right")
    return n_predicted, alarms[hi <= lo]


def _timeline_counts(
    alarms: Sequence[float] | np.ndarray,
    seizure_onsets: Sequence[float] | np.ndarray,
    monitored_intervals: Iterable[Sequence[float]],
    sop_s: float,
    sph_s: float,
    excluded_intervals: Iterable[Sequence[float]],
    other_onsets: Sequence[float] | np.ndarray,
) -> dict[str, float]:
    """The counts and hours of :func:`prediction_scores` (the definitions are there)."""
    a = np.sort(np.asarray(alarms, dtype=np.float64).ravel())
    onsets = np.sort(np.asarray(seizure_onsets, dtype=np.float64).ravel())
    every = np.sort(np.concatenate([onsets, np.asarray(other_onsets, dtype=np.float64).ravel()]))
    monitored = as_intervals(monitored_intervals)
    excluded = as_intervals(excluded_intervals)
    a = _outside(a, excluded)
    n_predicted, false = _alarm_outcomes(a, onsets, every, sop_s, sph_s)
    preictal = as_intervals(np.column_stack([every - sop_s - sph_s, every]))
    interictal = subtract_intervals(subtract_intervals(monitored, preictal), excluded)
    monitored_s = float(np.sum(monitored[:, 1] - monitored[:, 0]))
    interictal_s = float(np.sum(interictal[:, 1] - interictal[:, 0]))
    warning = as_intervals(np.column_stack([a, a + sph_s + sop_s]))
    occurrence = as_intervals(np.column_stack([a + sph_s, a + sph_s + sop_s]))
    return {
        "n_seizures": int(onsets.size),
        "n_predicted": n_predicted,
        "n_alarms": int(a.size),
        "n_false_alarms": int(false.size),
        "monitored_h": monitored_s / 3600.0,
        "interictal_h": interictal_s / 3600.0,
        "warning_h": overlap_measure(monitored, warning) / 3600.0,
        "covered_h": overlap_measure(monitored, occurrence) / 3600.0,
    }


def prediction_scores(
    alarms: Sequence[float] | np.ndarray,
    seizure_onsets: Sequence[float] | np.ndarray,
    monitored_intervals: Iterable[Sequence[float]],
    sop_s: float,
    sph_s: float,
    *,
    excluded_intervals: Iterable[Sequence[float]] = (),
    other_onsets: Sequence[float] | np.ndarray = (),
    window_labels: np.ndarray | None = None,
    window_scores: np.ndarray | None = None,
    alpha: float = 0.05,
    n_parameters: int = 1,
) -> dict[str, Any]:
    """Seizure-prediction performance of a set of alarms on one timeline, with the chance-level comparison.

    Definitions (times in seconds on one timeline):

    * a seizure is **predicted** when an alarm falls in ``[onset - SOP - SPH, onset - SPH]``, i.e. the occurrence
      window ``[a + SPH, a + SPH + SOP]`` that the alarm opens contains the onset;
    * an alarm is **false** when no seizure onset (evaluated or ``other_onsets``) lies in its occurrence window;
      alarms inside ``excluded_intervals`` (ictal and postictal time) are ignored;
    * **interictal time** is the monitored time minus ``[onset - SOP - SPH, onset]`` of every seizure and minus
      ``excluded_intervals``; ``fpr_per_h`` = false alarms / interictal hours;
    * **time in warning** is the share of monitored time inside some ``[a, a + SPH + SOP]``;
    * the chance level ``chance_probability`` is the share of monitored time covered by the alarms' occurrence
      windows (:mod:`tasks.evaluate.prediction_significance`).

    Args:
        alarms: Alarm times (:func:`alarms_from_probability`).
        seizure_onsets: Onsets of the seizures evaluated (qualifying leading seizures whose preictal time was
            scored).
        monitored_intervals: ``(start, end)`` stretches during which the predictor ran.
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        excluded_intervals: Ictal and postictal stretches.
        other_onsets: Onsets of the timeline's other seizures (not evaluated, but an alarm before them is not false
            and their preictal time is not interictal).
        window_labels: Optional ``(N,)`` preictal (1) / interictal (0) labels for the window ROC AUC.
        window_scores: Optional ``(N,)`` window scores for the ROC AUC.
        alpha: Significance level for ``random_predictor_sensitivity``.
        n_parameters: Independently optimised parameters d (:func:`binomial_p_value`).

    Returns:
        :func:`pool_prediction_scores`'s keys for this one timeline.
    """
    counts = _timeline_counts(
        alarms, seizure_onsets, monitored_intervals, sop_s, sph_s, excluded_intervals, other_onsets
    )
    return _summarise(counts, alpha, n_parameters, window_labels, window_scores)


def _window_auc(labels: np.ndarray | None, scores: np.ndarray | None) -> float | None:
    if labels is None or scores is None:
        return None
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"window_labels {y.shape} and window_scores {s.shape} must have the same shape")
    keep = ((y == 0) | (y == 1)) & np.isfinite(s)
    y, s = y[keep], s[keep]
    n_pos = int(np.sum(y == 1))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # Mann-Whitney U (ties averaged), the same number as sklearn's roc_auc_score
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _summarise(
    counts: Mapping[str, float],
    alpha: float,
    n_parameters: int,
    window_labels: np.ndarray | None,
    window_scores: np.ndarray | None,
) -> dict[str, Any]:
    n_sz, n_pred, n_false = int(counts["n_seizures"]), int(counts["n_predicted"]), int(counts["n_false_alarms"])
    monitored_h, interictal_h = float(counts["monitored_h"]), float(counts["interictal_h"])
    chance = _fraction(float(counts["covered_h"]), monitored_h)
    ok = chance is not None and n_sz > 0
    return {
        "sensitivity": ratio_or_none(n_pred, n_sz),
        "sensitivity_ci95": clopper_pearson(n_pred, n_sz),
        "fpr_per_h": ratio_or_none(n_false, interictal_h),
        "fpr_per_h_ci95": poisson_rate_interval(n_false, interictal_h),
        "time_in_warning": _fraction(float(counts["warning_h"]), monitored_h),
        "roc_auc": _window_auc(window_labels, window_scores),
        "p_value": binomial_p_value(n_sz, n_pred, chance, n_parameters) if ok else None,
        "random_predictor_sensitivity": (
            random_predictor_sensitivity(n_sz, chance, alpha, n_parameters) if ok else None
        ),
        "chance_probability": chance,
        "alpha": float(alpha),
        **{k: (int(v) if k.startswith("n_") else float(v)) for k, v in counts.items()},
    }


def pool_prediction_scores(
    parts: Sequence[Mapping[str, Any]],
    *,
    window_labels: np.ndarray | None = None,
    window_scores: np.ndarray | None = None,
    alpha: float = 0.05,
    n_parameters: int = 1,
) -> dict[str, Any]:
    """Pool :func:`prediction_scores` of several timelines: sum counts and hours, then take ratios.

    Args:
        parts: Outputs of :func:`prediction_scores`.
        window_labels: Optional labels of all windows, for a pooled ROC AUC.
        window_scores: Optional scores of all windows.
        alpha: Significance level for ``random_predictor_sensitivity``.
        n_parameters: See :func:`tasks.evaluate.prediction_significance.binomial_p_value`.

    Returns:
        ``sensitivity`` with ``sensitivity_ci95`` (Clopper-Pearson), ``fpr_per_h`` with ``fpr_per_h_ci95`` (exact
        Poisson over interictal hours), ``time_in_warning``, ``roc_auc``, ``p_value`` (binomial tail with the
        ``chance_probability`` of a seizure falling in an occurrence window), ``random_predictor_sensitivity``, and
        the summed ``n_seizures``, ``n_predicted``, ``n_alarms``, ``n_false_alarms``, ``monitored_h``,
        ``interictal_h``, ``warning_h``, ``covered_h``.
    """
    keys = ("n_seizures", "n_predicted", "n_alarms", "n_false_alarms", "monitored_h", "interictal_h")
    keys += ("warning_h", "covered_h")
    counts = {k: sum(float(p[k]) for p in parts) for k in keys}
    return _summarise(counts, alpha, n_parameters, window_labels, window_scores)


def _streams(windows: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per timeline: its window rows in time order, and a segment code per row (a new segment at a new recording,
    a new fold, or a gap between windows), so smoothing never runs across a gap."""
    start = windows["t_start_s"].to_numpy(dtype=float)
    end = windows["t_end_s"].to_numpy(dtype=float)
    rec = windows["recording_id"].astype(str).to_numpy() if "recording_id" in windows else None
    fold = windows["fold"].to_numpy() if "fold" in windows else None
    out = []
    for timeline, idx in windows.groupby(windows["timeline"].astype(str), sort=True).indices.items():
        idx = idx[np.lexsort((start[idx], end[idx]))]
        new = np.concatenate([[True], start[idx][1:] > np.maximum.accumulate(end[idx])[:-1] + EPS_S])
        if rec is not None:
            new[1:] |= rec[idx][1:] != rec[idx][:-1]
        if fold is not None:
            new[1:] |= fold[idx][1:] != fold[idx][:-1]
        out.append((str(timeline), idx, np.cumsum(new)))
    return out


def stream_columns(
    windows: pd.DataFrame, score: np.ndarray, threshold: float | np.ndarray, smooth_windows: int, refractory_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed probability (NaN in warm-ups) and whether an alarm was raised at each window, aligned with
    ``windows`` (for the report's alarm timelines and ``prediction_scored.csv``)."""
    s = np.asarray(score, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), s.shape)
    smoothed = np.full(s.shape, np.nan)
    alarm = np.zeros(s.shape, dtype=bool)
    end = windows["t_end_s"].to_numpy(dtype=float)
    for _, idx, segment in _streams(windows):
        smoothed[idx] = smooth_stream(s[idx], smooth_windows, segment)
        alarms = alarms_from_probability(end[idx], s[idx], thr[idx], smooth_windows, refractory_s, segment)
        first = np.searchsorted(end[idx], alarms, side="left")  # each alarm at its window's end time
        alarm[idx[first]] = True
    return smoothed, alarm


def _seizures_of(leading: pd.DataFrame, windows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per timeline: onsets evaluated (qualifying leading seizures whose preictal windows are among ``windows``),
    onsets of its other seizures, and every seizure's ``(onset, offset)`` on the timeline."""
    tested = set(windows.loc[windows["pred_label"] == 1, "lead_seizure_id"].astype(str))
    out = {}
    for timeline, sz in leading.groupby(leading["timeline"].astype(str)):
        evaluated = sz["seizure_id"].astype(str).isin(tested).to_numpy()
        onsets = sz["t_onset_s"].to_numpy(dtype=float)
        spans = np.column_stack([onsets, sz["t_offset_s"].to_numpy(dtype=float)])
        out[str(timeline)] = (onsets[evaluated], onsets[~evaluated], spans)
    return out


@dataclass(frozen=True)
class StreamLayout:
    """What scoring needs of a set of windows besides their scores, computed once: the streams, and per timeline
    its monitored time, seizures, ictal and postictal time and where a surrogate onset may fall. Scoring many score
    vectors on one layout (folds, surrogate tests, the calibration test) then costs only array work."""

    end: np.ndarray  # (N,) window end times: when each window's decision is available
    labels: np.ndarray  # (N,) pred_label
    streams: list[tuple[str, np.ndarray, np.ndarray]]  # (timeline, rows in time order, segment codes)
    timelines: list[dict[str, np.ndarray]]  # per stream: monitored, onsets, others, excluded, positions


def stream_layout(
    windows: pd.DataFrame, leading: pd.DataFrame, sop_s: float, sph_s: float, postictal_s: float = 0.0
) -> StreamLayout:
    """The :class:`StreamLayout` of ``windows`` (see :func:`prediction_report` for the arguments)."""
    seizures = _seizures_of(leading, windows)
    start = windows["t_start_s"].to_numpy(dtype=float)
    end = windows["t_end_s"].to_numpy(dtype=float)
    none = (np.zeros(0), np.zeros(0), np.zeros((0, 2)))
    streams = _streams(windows)
    timelines = []
    for timeline, idx, _ in streams:
        onsets, others, spans = seizures.get(timeline, none)
        excluded = as_intervals(np.column_stack([spans[:, 0], spans[:, 1] + postictal_s]))
        monitored = as_intervals(np.column_stack([start[idx], end[idx]]))
        timelines.append(
            {
                "monitored": monitored,
                "onsets": onsets,
                "others": others,
                "excluded": excluded,
                "positions": onset_positions(monitored, excluded, sop_s + sph_s),
            }
        )
    return StreamLayout(end, windows["pred_label"].to_numpy(), streams, timelines)


def score_layout(
    layout: StreamLayout,
    score: np.ndarray,
    threshold: float | np.ndarray,
    sop_s: float,
    sph_s: float,
    smooth_windows: int = 1,
    refractory_s: float | None = None,
    alpha: float = 0.05,
    n_parameters: int = 1,
    *,
    n_surrogates: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`prediction_report` on a precomputed :class:`StreamLayout`."""
    s = np.asarray(score, dtype=np.float64)
    if s.shape != layout.end.shape:
        raise ValueError(f"score has shape {s.shape}, expected {layout.end.shape} to match the windows")
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), s.shape)
    refractory = sop_s if refractory_s is None else float(refractory_s)
    parts, surrogate_input = [], []
    for (_, idx, segment), tl in zip(layout.streams, layout.timelines, strict=True):
        alarms = alarms_from_probability(layout.end[idx], s[idx], thr[idx], smooth_windows, refractory, segment)
        part = _timeline_counts(alarms, tl["onsets"], tl["monitored"], sop_s, sph_s, tl["excluded"], tl["others"])
        parts.append(part)
        ex = tl["excluded"]
        kept = (
            alarms[(measure_below(ex, alarms + EPS_S) - measure_below(ex, alarms - EPS_S)) <= 0] if len(ex) else alarms
        )
        surrogate_input.append((kept, int(part["n_seizures"]), tl["positions"]))
    report = pool_prediction_scores(
        parts, window_labels=layout.labels, window_scores=s, alpha=alpha, n_parameters=n_parameters
    )
    report["p_value_surrogate"] = surrogate_p_value(
        surrogate_input, int(report["n_predicted"]), sop_s, sph_s, n_surrogates, seed
    )
    return report


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
    *,
    postictal_s: float = 0.0,
    n_surrogates: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``prediction`` section of ``metrics.json`` from scored windows, pooled over timelines.

    Windows are grouped by timeline and cut into continuous streams (a new one at each recording, fold change or
    gap); alarms are raised per stream with :func:`alarms_from_probability` at each window's end time; the
    monitored time is the union of the windows' spans. Pass every window of the scored recordings (not only the
    labelled ones) to score them pseudo-prospectively. The seizures evaluated are the qualifying leading seizures
    whose preictal windows are among ``windows``; every seizure of ``leading`` on a timeline sets ictal and
    postictal time ``[onset, offset + postictal_s]`` aside.

    Args:
        windows: Scored windows (``timeline``, ``t_start_s``, ``t_end_s``, ``pred_label``, ``lead_seizure_id``;
            optional ``recording_id`` and ``fold``).
        score: ``(N,)`` preictal probabilities.
        threshold: Scalar or ``(N,)`` (each fold's threshold, chosen on its validation recordings).
        leading: :func:`tasks.label.windows.leading_seizures` (``seizure_id``, ``timeline``, ``t_onset_s``,
            ``t_offset_s``).
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        smooth_windows: Moving-average length before thresholding.
        refractory_s: Dead time after an alarm (default ``sop_s``).
        alpha: Significance level for ``random_predictor_sensitivity``.
        n_parameters: See :func:`tasks.evaluate.prediction_significance.binomial_p_value`.
        postictal_s: Postictal time after each seizure's offset, excluded with the seizure, in seconds.
        n_surrogates: Seizure-time surrogates for ``p_value_surrogate``.
        seed: Seed of the surrogates.

    Returns:
        :func:`pool_prediction_scores` of the timelines plus ``p_value_surrogate``
        (:func:`tasks.evaluate.prediction_significance.surrogate_p_value`).
    """
    layout = stream_layout(windows, leading, sop_s, sph_s, postictal_s)
    return score_layout(
        layout,
        score,
        threshold,
        sop_s,
        sph_s,
        smooth_windows,
        refractory_s,
        alpha,
        n_parameters,
        n_surrogates=n_surrogates,
        seed=seed,
    )


def threshold_layout(val: pd.DataFrame) -> dict[int, tuple[np.ndarray, list[tuple[str, np.ndarray, np.ndarray]]]]:
    """Per fold: the rows of ``val`` (``role == "val"`` rows with ``fold``) and their streams, for
    :func:`fold_thresholds`."""
    out = {}
    for k, rows in val.groupby("fold").indices.items():
        out[int(k)] = (rows, _streams(val.iloc[rows]))
    return out


def fold_thresholds(
    val: pd.DataFrame,
    threshold_metric: str,
    smooth_windows: int,
    layout: dict[int, tuple[np.ndarray, list]] | None = None,
) -> tuple[dict[int, float], list[str]]:
    """Each fold's threshold, chosen on the smoothed stream of its validation recordings (the signal that raises
    the alarms), over their labelled windows after the warm-up; never on the fold's test recordings.

    Args:
        val: ``role == "val"`` rows with ``fold``, ``score``, ``pred_label`` and the window columns of
            :func:`prediction_report`.
        threshold_metric: See :func:`tasks.metrics.choose_threshold`.
        smooth_windows: Moving-average length.
        layout: :func:`threshold_layout` of ``val``, when already computed.

    Returns:
        Thresholds by fold, and the fallbacks taken (a fold whose validation stream has one class gets 0.5).
    """
    layout = threshold_layout(val) if layout is None else layout
    score = val["score"].to_numpy(dtype=float)
    y_all = val["pred_label"].to_numpy()
    thresholds: dict[int, float] = {}
    notes = []
    for k, (rows, streams) in layout.items():
        smoothed = np.full(len(rows), np.nan)
        for _, idx, segment in streams:
            smoothed[idx] = smooth_stream(score[rows][idx], smooth_windows, segment)
        y = y_all[rows]
        keep = (y >= 0) & np.isfinite(smoothed)
        if np.unique(y[keep]).size < 2:
            notes.append(f"fold {k}: its validation recordings hold one class of labelled windows; threshold 0.5")
        thresholds[k] = choose_threshold(y[keep], smoothed[keep], threshold_metric)
    return thresholds, notes


def evaluate_prediction(
    windows: pd.DataFrame,
    fold_predictions: pd.DataFrame,
    leading: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    threshold_metric: str,
    smooth_windows: int,
    alpha: float,
    *,
    postictal_s: float = 0.0,
    n_surrogates: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pseudo-prospective prediction scores: every test recording scored whole by the fold model that never saw
    it, with the fold's threshold chosen on the smoothed stream of its validation recordings; alarms, false alarms
    and both p-values pooled over all scored recordings, and per patient.

    Args:
        windows: The label stage's windows (``fold`` per recording).
        fold_predictions: ``window_id, fold, role, score`` of :func:`tasks.train.eeg.cross_validate_prediction`.
        leading: The label stage's ``leading.csv``.
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        threshold_metric: Threshold choice on validation streams.
        smooth_windows: Causal moving-average length in windows.
        alpha: Significance level.
        postictal_s: Postictal time excluded after each seizure, seconds.
        n_surrogates: Seizure-time surrogates.
        seed: Seed of the surrogates.

    Returns:
        The ``prediction`` section and the scored test windows (``score``, ``threshold``, ``smoothed``, ``alarm``).
    """
    labelled = windows.set_index("window_id")

    def rows_of(role: str) -> pd.DataFrame:
        part = fold_predictions[fold_predictions["role"] == role]
        frame = labelled.loc[part["window_id"]].reset_index()
        return frame.assign(fold=part["fold"].to_numpy(), score=part["score"].to_numpy())

    thresholds, notes = fold_thresholds(rows_of("val"), threshold_metric, smooth_windows)
    oof = rows_of("test")
    oof["threshold"] = oof["fold"].map(thresholds).to_numpy(dtype=float)
    oof["smoothed"], oof["alarm"] = stream_columns(
        oof, oof["score"].to_numpy(), oof["threshold"].to_numpy(), smooth_windows, sop_s
    )
    kw = {"alpha": alpha, "postictal_s": postictal_s, "n_surrogates": n_surrogates, "seed": seed}
    report = prediction_report(
        oof, oof["score"].to_numpy(), oof["threshold"].to_numpy(), leading, sop_s, sph_s, smooth_windows, **kw
    )
    report.update(
        feasible=True,
        sop_s=sop_s,
        sph_s=sph_s,
        postictal_s=postictal_s,
        excluded="ictal and postictal time (onset to offset + postictal_s) and SPH + SOP before every seizure",
        scoring="pseudo-prospective: every recording scored once, whole and in time order, by a fold model that "
        "never saw it",
        n_recordings=int(oof["recording_id"].nunique()),
        fold_thresholds=thresholds,
        threshold=float(np.median(list(thresholds.values()))),
        threshold_provenance="median of the fold thresholds (each chosen on its validation recordings' smoothed "
        "stream); the shipped model is trained on all folds and its threshold is not validated on held-out data",
        fallbacks=notes,
    )
    per_patient = {}
    for patient, part in oof.groupby("patient"):
        part = part.reset_index(drop=True)
        per_patient[str(patient)] = prediction_report(
            part, part["score"].to_numpy(), part["threshold"].to_numpy(), leading, sop_s, sph_s, smooth_windows, **kw
        )
    report["by_patient"] = per_patient
    return report, oof
