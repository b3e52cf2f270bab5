"""Scoring for EEG seizure detection (windows and SzCORE events) and seizure prediction (alarms, chance level).

Pure functions: arrays and tables in, JSON-safe dicts out (Python floats and ints, ``None`` where a number is
undefined, e.g. sensitivity without seizures), in the ``metrics.json`` layout ``detection.window.*``,
``detection.event.*`` and ``prediction.*``. Proportions are fractions in [0, 1]; rates say their unit.

**Detection.** Window metrics reuse :func:`tasks.metrics.binary_metrics`. Event metrics follow SzCORE
(Dan et al. 2024, "SzCORE: seizure community open-source research evaluation framework for the validation of
electroencephalography-based automated seizure detection algorithms", Epilepsia 66(S3)), computed by its reference
implementation, the ``timescoring`` package: a detected event counts if it overlaps a reference seizure extended
by 30 s before and 60 s after; events closer than 90 s are merged and events longer than 5 min split. Window
probabilities become events by: threshold -> optional moving average -> events (:func:`detection_events`).

**Prediction.** An alarm at time ``a`` says "a seizure will start in ``[a + SPH, a + SPH + SOP]``"
(Winterhalder et al. 2003, Epilepsy Behav 4(3); Maiwald et al. 2004, Physica D 194). Alarms come from a smoothed
probability crossing a threshold, with a refractory period (:func:`alarms_from_probability`). The comparison with
chance is the analytic random predictor of Schelter et al. 2006 (Chaos 16, 013108; :func:`schelter_p_value`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from scipy import stats
from sklearn.metrics import roc_auc_score
from timescoring.annotations import Annotation
from timescoring.scoring import EventScoring

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EegEvaluateConfig, EegLabelConfig
from tasks.eeg_windows import read_windows
from tasks.metrics import binary_metrics, choose_threshold
from tasks.rundir import RunContext

#: SzCORE event-scoring parameters (Dan et al. 2024), seconds.
SZCORE = {
    "tolerance_start_s": 30.0,
    "tolerance_end_s": 60.0,
    "min_overlap": 0.0,
    "max_event_duration_s": 300.0,
    "min_duration_between_events_s": 90.0,
}
_EPS_S = 1e-6

Events = list[tuple[float, float]]


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def _fraction(num: float, den: float) -> float | None:
    r = _ratio(num, den)
    return None if r is None else min(max(r, 0.0), 1.0)


# --------------------------------------------------------------------------------------------- smoothing
def smooth_probability(prob: np.ndarray, smooth_windows: int = 1, causal: bool = True) -> np.ndarray:
    """Moving average of per-window probabilities over ``smooth_windows`` consecutive windows.

    A seizure lasts tens of seconds while a single window's score flickers with artefacts; averaging a few windows
    trades a little latency for far fewer spurious events/alarms.

    Args:
        prob: ``(N,)`` probabilities of consecutive windows of one continuous stretch of EEG, in time order.
        smooth_windows: Windows averaged (1: no smoothing).
        causal: Average the current and the ``k - 1`` previous windows (usable online, what a bedside detector
            could do; adds ``(k - 1) / 2`` windows of delay) rather than a centred window. The first windows
            average over those available.

    Returns:
        ``(N,)`` float64 smoothed probabilities.
    """
    p = np.asarray(prob, dtype=np.float64)
    k = int(smooth_windows)
    if k < 1:
        raise ValueError(f"smooth_windows={smooth_windows}: must be >= 1")
    if k == 1 or p.size == 0:
        return p.copy()
    c = np.concatenate([[0.0], np.cumsum(p)])
    i = np.arange(p.size)
    if causal:
        lo, hi = np.maximum(i - k + 1, 0), i + 1
    else:
        lo, hi = np.maximum(i - (k - 1) // 2, 0), np.minimum(i + k // 2 + 1, p.size)
    return (c[hi] - c[lo]) / (hi - lo)


# --------------------------------------------------------------------------------------------- detection
def windows_to_events(start_s: np.ndarray, positive: np.ndarray, window_s: float, step_s: float) -> Events:
    """Merge positive windows into events ``(start_s, end_s)`` in seconds.

    Each window's decision stands for the ``step_s`` around its centre (clipped to the window), not its whole
    span: with overlapping windows (step < window) the union of positive windows would stretch every event by
    ``window_s - step_s``. Decision periods that touch are merged.

    Args:
        start_s: ``(N,)`` window starts in seconds.
        positive: ``(N,)`` boolean decisions.
        window_s: Window length in seconds.
        step_s: Window step in seconds.

    Returns:
        Sorted, disjoint events as ``(start, end)`` float pairs.
    """
    s = np.asarray(start_s, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    if s.shape != pos.shape:
        raise ValueError(f"start_s {s.shape} and positive {pos.shape} must have the same length")
    half = min(step_s, window_s) / 2.0
    centre = s[pos] + window_s / 2.0
    return _merge(np.column_stack([centre - half, centre + half]))


def _merge(intervals: np.ndarray) -> Events:
    """Union of ``(n, 2)`` intervals as a sorted list of disjoint ``(start, end)`` pairs."""
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    iv = iv[iv[:, 1] > iv[:, 0]]
    if not len(iv):
        return []
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    ends = np.maximum.accumulate(iv[:, 1])
    new = np.concatenate([[True], iv[1:, 0] > ends[:-1] + _EPS_S])
    starts = iv[new, 0]
    stops = np.maximum.reduceat(iv[:, 1], np.flatnonzero(new))
    return [(float(a), float(b)) for a, b in zip(starts, stops, strict=True)]


def detection_events(
    start_s: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    window_s: float,
    step_s: float,
    smooth_windows: int = 1,
) -> Events:
    """Window probabilities of one recording -> detected seizure events.

    Post-processing, in order: causal moving average over ``smooth_windows`` windows
    (:func:`smooth_probability`), threshold (``>= threshold`` is ictal), then :func:`windows_to_events`.
    Merging nearby events and splitting long ones is left to the SzCORE scorer.

    Args:
        start_s: ``(N,)`` window starts of one recording in seconds, in time order.
        prob: ``(N,)`` ictal probabilities.
        threshold: Decision threshold, chosen on validation data.
        window_s: Window length in seconds.
        step_s: Window step in seconds.
        smooth_windows: Windows in the moving average (1: none).

    Returns:
        Detected events ``(start_s, end_s)``.
    """
    order = np.argsort(np.asarray(start_s), kind="stable")
    s = np.asarray(start_s, dtype=np.float64)[order]
    p = smooth_probability(np.asarray(prob, dtype=np.float64)[order], smooth_windows)
    return windows_to_events(s, p >= threshold, window_s, step_s)


def _clip_events(events: Iterable[Sequence[float]], duration_s: float) -> Events:
    out = []
    for ev in events:
        a, b = max(float(ev[0]), 0.0), min(float(ev[1]), duration_s)
        if b > a:
            out.append((a, b))
    return sorted(out)


def event_scores(
    per_recording: Sequence[tuple[Sequence[Sequence[float]], Any, float]],
    fs: int = 10,
    *,
    tolerance_start_s: float = SZCORE["tolerance_start_s"],
    tolerance_end_s: float = SZCORE["tolerance_end_s"],
    min_overlap: float = SZCORE["min_overlap"],
    max_event_duration_s: float = SZCORE["max_event_duration_s"],
    min_duration_between_events_s: float = SZCORE["min_duration_between_events_s"],
) -> dict[str, Any]:
    """SzCORE event-based sensitivity, precision, F1 and false positives per 24 h, pooled over recordings.

    Each recording is scored by ``timescoring.scoring.EventScoring`` (the SzCORE reference code, Dan et al. 2024)
    with every parameter passed explicitly: a reference seizure is detected when a detected event overlaps it
    extended by ``tolerance_start_s`` before its onset and ``tolerance_end_s`` after its offset; a detected event
    that overlaps no extended seizure is a false positive; events separated by less than
    ``min_duration_between_events_s`` are merged and events longer than ``max_event_duration_s`` are split (both for
    reference and detections). Pooling sums true positives, false positives, reference events and hours over
    recordings before taking ratios, so a long seizure-free recording weighs by its length, not as one average.

    Args:
        per_recording: ``(true_events, prediction, duration_s)`` per recording: reference seizures as
            ``(onset_s, offset_s)`` pairs; the prediction either as events ``(start_s, end_s)`` or as a boolean
            mask sampled at ``fs`` Hz of length ``round(duration_s * fs)``; and the recording's length in seconds.
        fs: Resolution in Hz of the annotations (timescoring rescores at 10 Hz internally).
        tolerance_start_s: SzCORE: 30 s.
        tolerance_end_s: SzCORE: 60 s.
        min_overlap: SzCORE: 0 (any overlap).
        max_event_duration_s: SzCORE: 300 s.
        min_duration_between_events_s: SzCORE: 90 s.

    Returns:
        ``sensitivity`` (TP / reference events; ``None`` without reference events), ``precision`` (TP / (TP + FP);
        ``None`` without detections), ``f1`` (``2TP / (2TP + FP + FN)``; ``None`` when both are empty),
        ``fp_per_24h`` (FP / total hours x 24), ``n_true`` (reference events as scored, after merging and
        splitting), ``n_detected`` (TP), ``n_false`` (FP), ``n_recordings`` and ``hours``.
    """
    params = EventScoring.Parameters(
        toleranceStart=tolerance_start_s,
        toleranceEnd=tolerance_end_s,
        minOverlap=min_overlap,
        maxEventDuration=max_event_duration_s,
        minDurationBetweenEvents=min_duration_between_events_s,
    )
    fs = int(fs)
    tp = fp = ref = 0
    seconds = 0.0
    for i, (true_events, prediction, duration_s) in enumerate(per_recording):
        n = int(round(float(duration_s) * fs))
        if n < 1:
            raise ValueError(f"recording {i}: duration_s={duration_s} is shorter than one sample at {fs} Hz")
        ref_ann = Annotation(_clip_events(true_events, n / fs), fs, n)
        if isinstance(prediction, np.ndarray) and prediction.dtype == bool:
            pred = prediction
            if pred.shape != (n,):
                raise ValueError(
                    f"recording {i}: prediction mask has shape {pred.shape}, expected ({n},) = duration_s x fs"
                )
            hyp_ann = Annotation(pred, fs)
        else:
            hyp_ann = Annotation(_clip_events(prediction, n / fs), fs, n)
        score = EventScoring(ref_ann, hyp_ann, params)
        tp += int(score.tp)
        fp += int(score.fp)
        ref += int(score.refTrue)
        seconds += n / fs
    hours = seconds / 3600.0
    return {
        "sensitivity": _ratio(tp, ref),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + (ref - tp)),
        "fp_per_24h": _ratio(fp * 24.0, hours),
        "n_true": ref,
        "n_detected": tp,
        "n_false": fp,
        "n_recordings": len(per_recording),
        "hours": float(hours),
    }


def detection_report(
    windows: pd.DataFrame,
    score: np.ndarray,
    threshold: float,
    seizures: pd.DataFrame,
    recordings: pd.DataFrame,
    window_s: float,
    step_s: float,
    smooth_windows: int = 1,
    fs: int = 10,
) -> dict[str, Any]:
    """The ``detection`` section of ``metrics.json`` for test windows: ``{"window": ..., "event": ...}``.

    Args:
        windows: Test windows with ``recording_id``, ``start_s`` and ``ictal`` (all windows of each test
            recording, so the events cover the recording).
        score: ``(N,)`` ictal probabilities for those rows.
        threshold: Decision threshold chosen on validation windows (never on these).
        seizures: ``seizures.csv`` (reference events per recording).
        recordings: ``recordings.csv`` (``duration_s`` per recording).
        window_s: Window length in seconds.
        step_s: Window step in seconds.
        smooth_windows: Moving-average length for the event post-processing.
        fs: Annotation resolution in Hz for :func:`event_scores`.

    Returns:
        ``window``: :func:`tasks.metrics.binary_metrics` on the raw window scores; ``event``:
        :func:`event_scores` over the test recordings.
    """
    s = np.asarray(score, dtype=np.float64)
    if s.shape != (len(windows),):
        raise ValueError(f"score has shape {s.shape}, expected ({len(windows)},) to match the windows")
    window = binary_metrics(windows["ictal"].to_numpy(dtype=np.int64), s, threshold)
    duration = dict(zip(recordings["recording_id"].astype(str), recordings["duration_s"].astype(float), strict=True))
    sz = seizures.assign(_rec=seizures["recording_id"].astype(str))
    per_recording = []
    for rec, idx in windows.groupby(windows["recording_id"].astype(str), sort=True).indices.items():
        true = sz.loc[sz["_rec"] == rec, ["onset_s", "offset_s"]].to_numpy(dtype=float).tolist()
        pred = detection_events(windows["start_s"].to_numpy()[idx], s[idx], threshold, window_s, step_s, smooth_windows)
        per_recording.append((true, pred, duration[rec]))
    return {"window": window, "event": event_scores(per_recording, fs)}


# --------------------------------------------------------------------------------------------- prediction
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
        nxt = int(np.searchsorted(candidates, candidates[i] + refractory_s - _EPS_S, side="left"))
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


def _as_intervals(intervals: Iterable[Sequence[float]]) -> np.ndarray:
    merged = _merge(np.asarray(list(intervals), dtype=np.float64).reshape(-1, 2))
    return np.asarray(merged, dtype=np.float64).reshape(-1, 2)


def _cover(disjoint: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Measure of ``disjoint`` (sorted, disjoint intervals) below each time in ``t``."""
    if not len(disjoint):
        return np.zeros_like(t, dtype=np.float64)
    lengths = disjoint[:, 1] - disjoint[:, 0]
    before = np.concatenate([[0.0], np.cumsum(lengths)])
    j = np.searchsorted(disjoint[:, 0], t, side="right") - 1
    inside = np.clip(t - disjoint[np.maximum(j, 0), 0], 0.0, lengths[np.maximum(j, 0)])
    return np.where(j >= 0, before[np.maximum(j, 0)] + inside, 0.0)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Measure of the intersection of two unions of sorted, disjoint intervals."""
    if not len(a) or not len(b):
        return 0.0
    return float(np.sum(_cover(b, a[:, 1]) - _cover(b, a[:, 0])))


def _subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intervals of ``a`` minus ``b`` (both sorted and disjoint)."""
    out = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b[(b[:, 1] > lo) & (b[:, 0] < hi)] if len(b) else []:
            if blo > cur:
                out.append((cur, blo))
            cur = max(cur, bhi)
        if hi > cur:
            out.append((cur, hi))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


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
    monitored = _as_intervals(monitored_intervals)
    excluded = _as_intervals(excluded_intervals)
    if len(excluded):
        in_excluded = (_cover(excluded, a + _EPS_S) - _cover(excluded, a - _EPS_S)) > 0
        a = a[~in_excluded]

    # predicted seizures: an alarm in [onset - SOP - SPH, onset - SPH]
    lo = np.searchsorted(a, onsets - sop_s - sph_s - _EPS_S, side="left")
    hi = np.searchsorted(a, onsets - sph_s + _EPS_S, side="right")
    n_predicted = int(np.sum(hi > lo))
    # false alarms: no onset in [a + SPH, a + SPH + SOP]
    lo = np.searchsorted(onsets, a + sph_s - _EPS_S, side="left")
    hi = np.searchsorted(onsets, a + sph_s + sop_s + _EPS_S, side="right")
    false = a[hi <= lo]

    preictal = _as_intervals(np.column_stack([onsets - sop_s - sph_s, onsets]))
    interictal = _subtract(_subtract(monitored, preictal), excluded)
    monitored_s = float(np.sum(monitored[:, 1] - monitored[:, 0]))
    interictal_s = float(np.sum(interictal[:, 1] - interictal[:, 0]))
    dead = _as_intervals(np.column_stack([false, false + refractory]))
    available_s = max(interictal_s - _overlap(interictal, dead), 0.0)
    warning = _as_intervals(np.column_stack([a, a + sph_s + sop_s]))
    warning_s = _overlap(monitored, warning)
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
        "sensitivity": _ratio(n_pred, n_sz),
        "fpr_per_h": _ratio(n_false, float(counts["interictal_h"])),
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
        windows: Test windows from :func:`tasks.label.eeg.label_prediction` (``timeline``, ``t_start_s``,
            ``t_end_s``, ``pred_label``, ``lead_seizure_id``; optional ``fold``), e.g. every fold's test windows
            together with their out-of-fold scores.
        score: ``(N,)`` preictal probabilities.
        threshold: Scalar or ``(N,)`` (each fold's threshold, chosen on its training windows).
        leading: :func:`tasks.label.eeg.leading_seizures` (``seizure_id``, ``timeline``, ``t_onset_s``).
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
        new = np.concatenate([[True], start[1:] > np.maximum.accumulate(end)[:-1] + _EPS_S])
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


# --------------------------------------------------------------------------------------------- Prefect task
def evaluate_detection(
    windows: pd.DataFrame,
    predictions: pd.DataFrame,
    seizures: pd.DataFrame,
    recordings: pd.DataFrame,
    window_s: float,
    step_s: float,
    threshold_metric: str,
    smooth_windows: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Threshold on val windows, then window and event metrics on the test recordings (overall and per patient)."""
    scored = windows.merge(predictions[["window_id", "score"]], on="window_id", how="inner")
    val = scored[scored["split"] == "val"]
    test = scored[scored["split"] == "test"].reset_index(drop=True)
    threshold = choose_threshold(val["ictal"].to_numpy(), val["score"].to_numpy(), threshold_metric)
    test_recs = recordings[recordings["recording_id"].isin(test["recording_id"])]
    test_sz = seizures[seizures["recording_id"].isin(test["recording_id"])]
    report = detection_report(
        test, test["score"].to_numpy(), threshold, test_sz, test_recs, window_s, step_s, smooth_windows
    )
    report["threshold"] = threshold
    per_patient = {}
    for patient, part in test.groupby("patient"):
        recs = test_recs[test_recs["patient"] == patient]
        per_patient[str(patient)] = detection_report(
            part.reset_index(drop=True),
            part["score"].to_numpy(),
            threshold,
            test_sz[test_sz["recording_id"].isin(recs["recording_id"])],
            recs,
            window_s,
            step_s,
            smooth_windows,
        )
    report["by_patient"] = per_patient
    return report, test


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


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_eeg_task(
    cfg: EegEvaluateConfig,
    label_cfg: EegLabelConfig,
    ingest: StageResult,
    label: StageResult,
    detection: StageResult | None,
    prediction: StageResult | None,
    ctx: RunContext,
) -> StageResult:
    """Score detection (SzCORE event rules) and prediction (alarms vs a random predictor); writes evaluation.json."""
    logger = get_run_logger()
    key = stage_key(
        "evaluate", label.key, detection.key if detection else None, prediction.key if prediction else None, cfg
    )

    def build(out: Path) -> dict:
        windows = read_windows(label.dir)
        recordings = pd.read_csv(ingest.dir / "recordings.csv", dtype={"recording_id": str, "patient": str})
        seizures = pd.read_csv(ingest.dir / "seizures.csv", dtype={"recording_id": str, "patient": str})
        result: dict[str, Any] = {}
        if detection is not None:
            det, test = evaluate_detection(
                windows,
                pd.read_csv(detection.dir / "predictions.csv"),
                seizures,
                recordings,
                label_cfg.window_s,
                label_cfg.step_s,
                cfg.detection_threshold_metric,
                cfg.detection_smooth_windows,
            )
            result["detection"] = det
            test.to_csv(out / "detection_scored.csv", index=False)
            compare = {}
            for folder in sorted((detection.dir / "compare").glob("*")) if (detection.dir / "compare").is_dir() else []:
                other, _ = evaluate_detection(
                    windows,
                    pd.read_csv(folder / "predictions.csv"),
                    seizures,
                    recordings,
                    label_cfg.window_s,
                    label_cfg.step_s,
                    cfg.detection_threshold_metric,
                    cfg.detection_smooth_windows,
                )
                other.pop("by_patient", None)
                compare[folder.name] = {"detection": other}
            if compare:
                result["models"] = compare
        feasible = label.summary["prediction"]
        if prediction is not None:
            leading = pd.read_csv(label.dir / "leading.csv", dtype={"seizure_id": str, "timeline": str})
            pred, oof = evaluate_prediction(
                windows,
                pd.read_csv(prediction.dir / "fold_predictions.csv"),
                leading,
                label_cfg.sop_s,
                label_cfg.sph_s,
                cfg.prediction_threshold_metric,
                cfg.prediction_smooth_windows,
                cfg.alpha,
            )
            result["prediction"] = pred
            oof.to_csv(out / "prediction_scored.csv", index=False)
        elif not feasible["feasible"]:
            result["prediction"] = {"feasible": False, "reason": feasible["reason"]}
        (out / "evaluation.json").write_text(json.dumps(result, indent=2, default=float))
        head: dict[str, Any] = {}
        if "detection" in result:
            head["detection_event_sensitivity"] = result["detection"]["event"]["sensitivity"]
            head["detection_fp_per_24h"] = result["detection"]["event"]["fp_per_24h"]
        if result.get("prediction", {}).get("feasible"):
            head["prediction_sensitivity"] = result["prediction"]["sensitivity"]
            head["prediction_p_value"] = result["prediction"]["p_value"]
        return head

    result = run_stage(StageCache(ctx.cache_root), "evaluate", key, build, ctx.refreshes("evaluate"))
    logger.info("evaluate: %s", result.summary)
    return result
