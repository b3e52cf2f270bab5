"""EEG detection scoring: SzCORE events, post-processing from window probabilities to events, the detection report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.detection_scoring import (
    detection_events,
    detection_report,
    event_scores,
    smooth_probability,
    windows_to_events,
)
from tasks.label.windows import make_windows

HOUR = 3600.0


def json_safe(d: dict) -> None:
    json.dumps(d, allow_nan=False)


# --------------------------------------------------------------------------------------------- detection
def test_event_scores_follow_szcore_tolerances() -> None:
    seizure = [(1000.0, 1060.0)]
    early_20 = event_scores([(seizure, [(980.0, 985.0)], HOUR)], fs=10)  # ends 15 s before onset
    assert early_20["sensitivity"] == 1.0 and early_20["n_false"] == 0 and early_20["precision"] == 1.0

    early_40 = event_scores([(seizure, [(955.0, 960.0)], HOUR)], fs=10)  # ends 40 s before onset: outside 30 s
    assert early_40["sensitivity"] == 0.0 and early_40["n_false"] == 1 and early_40["f1"] == 0.0

    late = event_scores([(seizure, [(1110.0, 1115.0)], HOUR)], fs=10)  # 50 s after offset: inside 60 s
    assert late["sensitivity"] == 1.0 and late["n_false"] == 0

    # two background detections 60 s apart (< 90 s) merge into one false positive
    merged = event_scores([(seizure, [(1000.0, 1030.0), (2000.0, 2010.0), (2070.0, 2080.0)], HOUR)], fs=10)
    assert merged["n_detected"] == 1 and merged["n_false"] == 1
    assert merged["precision"] == 0.5 and merged["f1"] == pytest.approx(2 / 3)
    apart = event_scores([([], [(2000.0, 2010.0), (2200.0, 2210.0)], HOUR)], fs=10)  # 190 s apart: two
    assert apart["n_false"] == 2 and apart["sensitivity"] is None


def test_event_scores_pool_fp_per_24h_and_accept_masks() -> None:
    six_h = 6 * HOUR
    mask = np.zeros(int(six_h * 10), dtype=bool)
    mask[10 * 5000 : 10 * 5010] = True  # one false detection, given as a 10-Hz mask
    result = event_scores(
        [
            ([(100.0, 150.0)], [(110.0, 120.0), (3000.0, 3005.0), (9000.0, 9005.0)], six_h),  # TP + 2 FP
            ([], mask, six_h),  # 1 FP
        ],
        fs=10,
    )
    assert result["n_false"] == 3 and result["hours"] == pytest.approx(12.0)
    assert result["fp_per_24h"] == pytest.approx(3 / 12 * 24)  # 6 per day
    assert result["sensitivity"] == 1.0 and result["n_true"] == 1 and result["precision"] == 0.25
    json_safe(result)
    with pytest.raises(ValueError, match="expected"):
        event_scores([([], mask[:-1], six_h)], fs=10)


def test_post_processing_from_window_probability_to_events() -> None:
    start = np.arange(0.0, 100.0, 1.0)  # 4-s windows every 1 s
    prob = np.zeros_like(start)
    prob[40:50] = 0.9
    prob[70] = 0.9  # a single-window blip
    events = detection_events(start, prob, 0.5, window_s=4.0, step_s=1.0)
    # each window decides the 1 s around its centre (start + 2 s): [41.5, 51.5) and [71.5, 72.5)
    assert events == [(41.5, 51.5), (71.5, 72.5)]
    # causal 3-window mean: >= 0.5 from the 2nd high window to one past the last; the blip is averaged away
    assert detection_events(start, prob, 0.5, 4.0, 1.0, smooth_windows=3) == [(42.5, 52.5)]
    np.testing.assert_allclose(smooth_probability(np.array([0.0, 3.0, 6.0, 9.0]), 2), [0.0, 1.5, 4.5, 7.5])
    np.testing.assert_allclose(smooth_probability(np.array([0.0, 3.0, 6.0]), 3, causal=False), [1.5, 3.0, 4.5])
    assert windows_to_events(np.array([0.0, 4.0]), np.array([True, True]), 4.0, 4.0) == [(0.0, 8.0)]


def test_detection_report_sections() -> None:
    rec = pd.DataFrame({"recording_id": ["a", "b"], "patient": ["p", "p"], "duration_s": [600.0, 600.0]})
    sz = pd.DataFrame(
        {"recording_id": ["a"], "patient": ["p"], "seizure_id": ["s"], "onset_s": [200.0], "offset_s": [260.0]}
    )
    w = make_windows(rec, sz, sfreq=1.0, window_s=4.0, step_s=2.0)
    score = w["ictal"].to_numpy(dtype=float) * 0.8 + 0.1
    report = detection_report(w, score, 0.5, sz, rec, window_s=4.0, step_s=2.0)
    assert report["window"]["recall"] == 1.0 and report["window"]["specificity"] == 1.0
    assert report["event"]["sensitivity"] == 1.0 and report["event"]["fp_per_24h"] == 0.0
    assert report["event"]["n_recordings"] == 2
    json_safe(report)


def test_event_scores_carry_exact_intervals() -> None:
    """Clopper-Pearson for the sensitivity and an exact Poisson interval for FP/24 h, beside the point values."""
    from tasks.confidence_intervals import clopper_pearson, poisson_rate_interval

    scores = event_scores([([(100.0, 160.0)], [(110.0, 150.0), (2000.0, 2030.0)], 86400.0)])
    assert scores["sensitivity_ci95"] == clopper_pearson(1, 1)
    assert scores["fp_per_24h_ci95"] == poisson_rate_interval(1, 1.0)
