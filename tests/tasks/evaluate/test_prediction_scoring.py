"""EEG prediction scoring: alarms, prediction metrics and the Schelter chance level."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tasks.evaluate.prediction_scoring import (
    alarms_from_probability,
    chance_prediction_probability,
    fold_thresholds,
    pool_prediction_scores,
    prediction_report,
    prediction_scores,
    random_predictor_sensitivity,
    schelter_p_value,
)
from tasks.label.splits import prediction_folds
from tasks.label.windows import label_prediction, leading_seizures, make_windows

SOP, SPH = 1800.0, 300.0
HOUR = 3600.0


def json_safe(d: dict) -> None:
    json.dumps(d, allow_nan=False)


# --------------------------------------------------------------------------------------------- alarms
def test_alarms_respect_the_refractory_period() -> None:
    t = np.arange(10.0, 4 * HOUR, 10.0)
    always = alarms_from_probability(t, np.ones_like(t), 0.5, smooth_windows=1, refractory_s=SOP)
    np.testing.assert_allclose(always, [10.0, 1810.0, 3610.0, 5410.0, 7210.0, 9010.0, 10810.0, 12610.0])

    prob = np.zeros_like(t)
    prob[100:103] = 1.0  # 3 windows high at t = 1010..1030
    prob[110] = 1.0  # within the refractory period of the first alarm
    prob[500] = 1.0  # after it
    alarms = alarms_from_probability(t, prob, 0.5, smooth_windows=1, refractory_s=SOP)
    np.testing.assert_allclose(alarms, [1010.0, 5010.0])
    assert np.diff(alarms).min() >= SOP
    # smoothing over 3 windows: only the 3-window run reaches 0.5, at its 2nd window
    smoothed = alarms_from_probability(t, prob, 0.5, smooth_windows=3, refractory_s=SOP)
    np.testing.assert_allclose(smoothed, [1020.0])
    # smoothing restarts at a new segment, and a segment's first smooth_windows - 1 windows are a warm-up that
    # raises no alarm (a raw, unsmoothed score would alarm more easily than the stream it belongs to)
    np.testing.assert_allclose(alarms_from_probability(t, prob, 0.9, 2, SOP), [1020.0])
    seg = np.where(t < 1010.0, 0, 1)
    np.testing.assert_allclose(alarms_from_probability(t, prob, 0.9, 2, SOP, segments=seg), [1020.0])
    seg = np.where(t < 1000.0, 0, 1)  # the high run starts a segment's second window: averaged with the first
    np.testing.assert_allclose(alarms_from_probability(t, prob, 0.9, 2, SOP, segments=seg), [1020.0])
    np.testing.assert_allclose(alarms_from_probability(t, prob, 0.4, 2, SOP, segments=seg), [1010.0, 5010.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        alarms_from_probability(t[::-1], prob, 0.5)


# --------------------------------------------------------------------------------------------- prediction
def test_prediction_scores_on_a_hand_timeline() -> None:
    onsets = [10 * HOUR, 20 * HOUR]
    alarms = [
        10 * HOUR - 1000.0,  # in [onset - 2100, onset - 300]: predicts seizure 1
        20 * HOUR - 200.0,  # inside the SPH: too late, and false
        2 * HOUR,  # false
    ]
    result = prediction_scores(alarms, onsets, [(0.0, 30 * HOUR)], SOP, SPH)
    assert result["n_predicted"] == 1 and result["sensitivity"] == 0.5
    assert result["n_false_alarms"] == 2
    interictal_h = 30 - 2 * (SOP + SPH) / HOUR
    assert result["interictal_h"] == pytest.approx(interictal_h)
    assert result["fpr_per_h"] == pytest.approx(2 / interictal_h)
    assert result["time_in_warning"] == pytest.approx(3 * (SOP + SPH) / (30 * HOUR))
    # chance: the share of monitored time inside the alarms' occurrence windows [a + SPH, a + SPH + SOP]
    assert result["covered_h"] == pytest.approx(3 * SOP / HOUR)
    assert result["chance_probability"] == pytest.approx(3 * SOP / (30 * HOUR))
    tail = 1 - (1 - result["chance_probability"]) ** 2  # P(X >= 1), X ~ Bin(2, P)
    assert result["p_value"] == pytest.approx(tail)
    assert result["sensitivity_ci95"][0] == pytest.approx(0.0126, abs=1e-4)  # Clopper-Pearson 1/2
    assert result["fpr_per_h_ci95"][0] < result["fpr_per_h"] < result["fpr_per_h_ci95"][1]
    json_safe(result)


def test_schelter_formula() -> None:
    p = chance_prediction_probability(0.2, SOP)
    assert p == pytest.approx(1 - np.exp(-0.1))
    # binomial tail P(X >= k), X ~ Bin(5, p)
    tail = sum(math.comb(5, j) * p**j * (1 - p) ** (5 - j) for j in range(3, 6))
    assert schelter_p_value(5, 3, 0.2, SOP) == pytest.approx(tail)
    assert schelter_p_value(5, 3, 0.2, SOP, n_parameters=4) == pytest.approx(1 - (1 - tail) ** 4)
    assert schelter_p_value(5, 0, 0.2, SOP) == 1.0
    assert schelter_p_value(0, 0, 0.2, SOP) is None
    # critical sensitivity: above it the p-value is <= alpha, at it > alpha
    crit = random_predictor_sensitivity(20, p, alpha=0.05)
    k = round(crit * 20)
    assert schelter_p_value(20, k, 0.2, SOP) > 0.05 >= schelter_p_value(20, k + 1, 0.2, SOP)


def test_p_value_perfect_vs_always_on_predictor() -> None:
    onsets = np.arange(1, 11) * 10 * HOUR  # 10 seizures over 105 h
    monitored = [(0.0, 105 * HOUR)]
    perfect = prediction_scores(onsets - 1200.0, onsets, monitored, SOP, SPH)
    assert perfect["sensitivity"] == 1.0 and perfect["n_false_alarms"] == 0
    assert perfect["time_in_warning"] < 0.1
    assert perfect["p_value"] < 1e-6 and perfect["random_predictor_sensitivity"] <= 0.2

    t = np.arange(0.0, 105 * HOUR, 30.0)
    always = alarms_from_probability(t, np.ones_like(t), 0.5, refractory_s=SOP)
    on = prediction_scores(always, onsets, monitored, SOP, SPH)
    assert on["sensitivity"] == 1.0 and on["time_in_warning"] > 0.99
    assert on["p_value"] > 0.5 and on["random_predictor_sensitivity"] == 1.0
    json_safe(perfect)
    json_safe(on)


def test_random_predictor_is_not_significant() -> None:
    """Poisson alarms that ignore the seizures: the test should reject at about its nominal rate, not more."""
    p_values = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        onsets = np.sort(rng.choice(np.arange(2, 300), size=15, replace=False)) * 2 * HOUR
        raw = np.sort(rng.uniform(0, 600 * HOUR, rng.poisson(0.3 * 600)))
        alarms, last = [], -np.inf  # a refractory period, as alarms_from_probability applies
        for a in raw:
            if a >= last + SOP:
                alarms.append(a)
                last = a
        result = prediction_scores(alarms, onsets, [(0.0, 600 * HOUR)], SOP, SPH)
        p_values.append(result["p_value"])
    p_values = np.array(p_values)
    assert np.mean(p_values < 0.05) <= 0.15
    assert np.median(p_values) > 0.2


def test_prediction_report_end_to_end() -> None:
    rows = [(f"p_s{i}", "p", 7200.0, 7200.0 * i) for i in range(3)]
    rows += [(f"p_f{i}", "p", 3600.0, 21600.0 + 3600.0 * i) for i in range(4)]
    rec = pd.DataFrame(rows, columns=["recording_id", "patient", "duration_s", "start_offset_s"])
    sz = pd.DataFrame(
        {
            "recording_id": [f"p_s{i}" for i in range(3)],
            "patient": "p",
            "seizure_id": [f"sz{i}" for i in range(3)],
            "onset_s": 5400.0,
            "offset_s": 5460.0,
        }
    )
    w = make_windows(rec, sz, 1.0, 60.0, 60.0)
    lab = label_prediction(w, rec, sz, SOP, SPH, interictal_gap_s=HOUR, postictal_s=600.0)
    folds = prediction_folds(lab)
    test = folds[folds["fold"] >= 0].reset_index(drop=True)
    score = np.where(test["pred_label"] == 1, 0.9, 0.1)
    leading = leading_seizures(rec, sz, SOP, SPH)
    report = prediction_report(test, score, np.full(len(test), 0.5), leading, SOP, SPH, smooth_windows=3)
    assert report["n_seizures"] == 3 and report["sensitivity"] == 1.0
    assert report["fpr_per_h"] == 0.0 and report["roc_auc"] == 1.0
    assert 0.0 < report["time_in_warning"] < 1.0
    json_safe(report)
    assert report["p_value_surrogate"] < 0.01
    pooled = pool_prediction_scores([report, report])
    assert pooled["n_seizures"] == 6 and pooled["sensitivity"] == 1.0


def test_a_one_class_validation_fold_says_its_threshold_is_the_default() -> None:
    """Fallbacks say so (issue #12): a fold whose validation recordings hold only interictal windows cannot place a
    threshold; it gets 0.5, and a note for the log and the report names the fold."""
    t = np.arange(0.0, 400.0, 4.0)
    val = pd.DataFrame(
        {
            "fold": np.repeat([0, 1], 50),
            "timeline": "p",
            "recording_id": np.repeat(["a", "b"], 50),
            "t_start_s": t,
            "t_end_s": t + 4.0,
            "score": np.linspace(0, 1, 100),
            "pred_label": np.r_[np.zeros(25), np.ones(25), np.zeros(50)].astype(int),
        }
    )
    thresholds, notes = fold_thresholds(val, "balanced_accuracy", 3)
    assert thresholds[1] == 0.5 and thresholds[0] != 0.5
    assert notes == ["fold 1: its validation recordings hold one class of labelled windows; threshold 0.5"]
