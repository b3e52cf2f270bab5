"""Scoring EEG seizure detection: window probabilities to events, SzCORE event scores, and the detection report.

Pure functions: arrays and tables in, JSON-safe dicts out (Python floats and ints, ``None`` where a number is
undefined, e.g. sensitivity without seizures), in the ``metrics.json`` layout ``detection.window.*`` and
``detection.event.*``. Proportions are fractions in [0, 1]; rates say their unit. The evaluate stage scores the
trained detector with :func:`evaluate_detection`, and the synth stage's synthetic-data experiment scores its arms
with the same function, which is why it lives on the ground floor.

Window metrics reuse :func:`tasks.metrics.binary_metrics`. Event metrics follow SzCORE (Dan et al. 2024, "SzCORE:
seizure community open-source research evaluation framework for the validation of electroencephalography-based
automated seizure detection algorithms", Epilepsia 66(S3)), computed by its reference implementation, the
``timescoring`` package: a detected event counts if it overlaps a reference seizure extended by 30 s before and
60 s after; events closer than 90 s are merged and events longer than 5 min split. Window probabilities become
events by: threshold -> optional moving average -> events (:func:`detection_events`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from timescoring.annotations import Annotation
from timescoring.scoring import EventScoring

from tasks.confidence_intervals import clopper_pearson, poisson_rate_interval
from tasks.metrics import binary_metrics, choose_threshold
from tasks.time_intervals import merge_intervals

#: SzCORE event-scoring parameters (Dan et al. 2024), seconds.
SZCORE = {
    "tolerance_start_s": 30.0,
    "tolerance_end_s": 60.0,
    "min_overlap": 0.0,
    "max_event_duration_s": 300.0,
    "min_duration_between_events_s": 90.0,
}


Events = list[tuple[float, float]]


def ratio_or_none(num: float, den: float) -> float | None:
    """``num / den``, or ``None`` when the denominator is not positive (a rate that cannot be measured)."""
    return float(num) / float(den) if den > 0 else None


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
    return merge_intervals(np.column_stack([centre - half, centre + half]))


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
        ``fp_per_24h`` (FP / total hours x 24), their exact 95 % intervals ``sensitivity_ci95`` (Clopper-Pearson)
        and ``fp_per_24h_ci95`` (Poisson) as ``[low, high]`` or ``None``, ``n_true`` (reference events as scored,
        after merging and splitting), ``n_detected`` (TP), ``n_false`` (FP), ``n_recordings`` and ``hours``.
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
        "sensitivity": ratio_or_none(tp, ref),
        "precision": ratio_or_none(tp, tp + fp),
        "f1": ratio_or_none(2 * tp, 2 * tp + fp + (ref - tp)),
        "fp_per_24h": ratio_or_none(fp * 24.0, hours),
        "sensitivity_ci95": clopper_pearson(tp, ref),
        "fp_per_24h_ci95": poisson_rate_interval(fp, hours / 24.0),
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
    if val["ictal"].nunique() < 2:
        report["fallbacks"] = [
            f"the validation split has {'no' if val.empty else 'one class of'} windows: the detection threshold "
            "is the default 0.5, not chosen on validation"
        ]
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
