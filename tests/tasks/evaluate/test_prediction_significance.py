"""Calibration of the prediction p-values on a leave-one-seizure-out layout like the quick profile's.

Random scores go through the real evaluation path (fold thresholds on smoothed validation streams, causal smoothing,
alarms, both p-values) on the windows and folds the label stage would make for the simulator's seizure placement.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import signal

from tasks.evaluate.prediction_scoring import (
    evaluate_prediction,
    fold_thresholds,
    prediction_scores,
    score_layout,
    stream_layout,
    threshold_layout,
)
from tasks.evaluate.prediction_significance import binomial_p_value, surrogate_p_value
from tasks.ingest.simulate import SimulationSpec, plan_patients
from tasks.label.splits import prediction_folds
from tasks.label.windows import label_prediction, leading_seizures, make_windows

SOP, SPH, POSTICTAL, SMOOTH = 600.0, 120.0, 300.0, 15  # the quick profile's
HOUR = 3600.0
METRICS = ("balanced_accuracy", "accuracy", "f1")


@pytest.fixture(scope="module")
def loso() -> dict:
    """The quick profile's layout: 3 patients x 4 files of 40 min, 4-s windows, 9 leading seizures, LOSO folds."""
    spec = SimulationSpec(n_patients=3, recordings_per_patient=4, recording_s=2400.0, preictal_s=900.0)
    rows, sz = [], []
    for plan in plan_patients(spec):
        for r, seizures in enumerate(plan.recordings):
            rid = f"{plan.code}_{r + 1:02d}"
            rows.append((rid, plan.code, 2400.0, r * 2410.0))
            sz += [(rid, plan.code, f"{rid}_{i}", a, b) for i, (a, b) in enumerate(seizures)]
    rec = pd.DataFrame(rows, columns=["recording_id", "patient", "duration_s", "start_offset_s"])
    seizures = pd.DataFrame(sz, columns=["recording_id", "patient", "seizure_id", "onset_s", "offset_s"])
    windows = make_windows(rec, seizures, 16.0, 4.0, 4.0)
    windows = prediction_folds(label_prediction(windows, rec, seizures, SOP, SPH, 900.0, POSTICTAL))
    leading = leading_seizures(rec, seizures, SOP, SPH)
    folds = sorted(windows["fold"].unique())
    parts = []
    for i, k in enumerate(folds):
        for role, f in (("test", k), ("val", folds[(i + 1) % len(folds)])):
            ids = windows.loc[windows["fold"] == f, "window_id"]
            parts.append(pd.DataFrame({"window_id": ids.to_numpy(), "fold": k, "role": role}))
    fold_predictions = pd.concat(parts, ignore_index=True)
    labelled = windows.set_index("window_id")
    frames = {}
    for role in ("val", "test"):
        part = fold_predictions[fold_predictions["role"] == role]
        frames[role] = labelled.loc[part["window_id"]].reset_index().assign(fold=part["fold"].to_numpy())
    return {
        "windows": windows,
        "leading": leading,
        "fold_predictions": fold_predictions,
        "val": frames["val"],
        "test": frames["test"],
        "val_layout": threshold_layout(frames["val"]),
        "test_layout": stream_layout(frames["test"], leading, SOP, SPH, POSTICTAL),
    }


def _random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """Scores that know nothing of the seizures: white or slowly wandering (AR(1)) noise; the wandering kinds
    give a few long excursions, so some runs raise few alarms and no false one (where the old p-value collapsed)."""
    phi = (0.0, 0.99, 0.998)[rng.integers(3)]
    z = signal.lfilter([np.sqrt(1 - phi**2)], [1.0, -phi], rng.standard_normal(n))
    return 1.0 / (1.0 + np.exp(-z))


def _chance_run(loso: dict, seed: int, n_surrogates: int = 100) -> dict:
    rng = np.random.default_rng(seed)
    val = loso["val"].assign(score=_random_scores(len(loso["val"]), rng))
    metric = METRICS[seed % len(METRICS)]  # accuracy picks high thresholds: few alarms, often no false one
    thresholds, _ = fold_thresholds(val, metric, SMOOTH, layout=loso["val_layout"])
    test = loso["test"]
    thr = test["fold"].map(thresholds).to_numpy(dtype=float)
    score = _random_scores(len(test), rng)
    return score_layout(loso["test_layout"], score, thr, SOP, SPH, SMOOTH, n_surrogates=n_surrogates, seed=seed)


@pytest.mark.slow
def test_random_scores_are_significant_at_most_at_the_nominal_rate(loso: dict) -> None:
    """1,000 random-score runs on the quick profile's LOSO layout: each p-value below 0.05 in at most 6.5 % of
    them (the landed Schelter p-value did so in 18 %, nearly all with zero false alarms). ``make test`` runs slow
    tests too, so this is also the issue's "<= 7 % over >= 200 seeds" check."""
    results = [_chance_run(loso, seed) for seed in range(1000)]
    p = np.array([r["p_value"] for r in results], dtype=float)
    p_surrogate = np.array([r["p_value_surrogate"] for r in results], dtype=float)
    assert np.mean(p < 0.05) <= 0.065
    assert np.mean(p_surrogate < 0.05) <= 0.065


def test_few_random_alarms_are_significant_at_most_at_the_nominal_rate(loso: dict) -> None:
    """1,000 runs of a handful of alarms at random windows (the alarms of a predictor that rarely fires, whatever
    the seizures do) on the same layout: this is the regime of zero false alarms and one or two lucky hits in which
    the landed p-value gave p = 0. Both p-values stay at or below the nominal rate."""
    layout = loso["test_layout"]
    n = len(loso["test"])
    results = []
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        score = np.zeros(n)
        score[rng.integers(0, n, 1 + rng.poisson(3))] = 1.0
        results.append(score_layout(layout, score, 0.5, SOP, SPH, 1, n_surrogates=100, seed=seed))
    p = np.array([r["p_value"] for r in results], dtype=float)
    p_surrogate = np.array([r["p_value_surrogate"] for r in results], dtype=float)
    lucky = np.array([r["n_false_alarms"] == 0 and r["n_predicted"] > 0 for r in results])
    assert lucky.mean() > 0.02  # the old p-value called every one of these significant
    assert np.mean(p < 0.05) <= 0.065
    assert np.mean(p_surrogate < 0.05) <= 0.065


def test_one_lucky_alarm_without_false_alarms_is_not_significant() -> None:
    """The zero-false-alarm collapse: one alarm that happens to precede 1 of 9 seizures, no false alarm. The old
    chance level (false alarms / hour = 0) gave P = 0 and p = 0; the share of time in an occurrence window does not."""
    onsets = np.arange(1, 10) * HOUR
    result = prediction_scores([onsets[0] - 300.0], onsets, [(0.0, 10 * HOUR)], SOP, SPH)
    assert result["n_false_alarms"] == 0 and result["n_predicted"] == 1
    assert result["p_value"] == pytest.approx(1 - (1 - SOP / (10 * HOUR)) ** 9)
    assert result["p_value"] > 0.05
    assert binomial_p_value(9, 1, 0.0) == 0.0  # what a zero chance level gives


def test_surrogates_of_a_perfect_and_an_always_on_predictor() -> None:
    positions = np.array([[SOP + SPH, 30 * HOUR]])
    onsets = np.arange(1, 10) * 3 * HOUR
    perfect = onsets - 500.0
    assert surrogate_p_value([(perfect, 9, positions)], 9, SOP, SPH, 999, seed=0) == pytest.approx(1 / 1000)
    always = np.arange(0.0, 30 * HOUR, SOP)
    assert surrogate_p_value([(always, 9, positions)], 9, SOP, SPH, 999, seed=0) == 1.0
    assert surrogate_p_value([(perfect, 0, positions)], 0, SOP, SPH) is None


def test_chance_and_planted_predictors_end_to_end(loso: dict) -> None:
    """Through evaluate_prediction: random scores are not significant; scores that rise over the preictal build-up
    (what a predictor that learned it outputs) are, by both tests, with their intervals."""
    windows, leading, fp = loso["windows"], loso["leading"], loso["fold_predictions"]
    rng = np.random.default_rng(7)
    chance, _ = evaluate_prediction(
        windows,
        fp.assign(score=rng.random(len(fp))),
        leading,
        SOP,
        SPH,
        "balanced_accuracy",
        SMOOTH,
        0.05,
        postictal_s=POSTICTAL,
    )
    assert chance["p_value"] > 0.05 and chance["p_value_surrogate"] > 0.05

    t = windows.set_index("window_id").loc[fp["window_id"]]
    onsets = leading.set_index("seizure_id")["t_onset_s"]
    lead_onset = t["lead_seizure_id"].map(onsets).to_numpy(dtype=float)  # NaN outside preictal windows
    build_up = np.nan_to_num(np.clip(1 - (lead_onset - SPH - t["t_end_s"].to_numpy()) / SOP, 0, 1))
    planted = np.clip(0.25 + 0.5 * build_up + 0.15 * rng.standard_normal(len(fp)), 0, 1)
    report, oof = evaluate_prediction(
        windows,
        fp.assign(score=planted),
        leading,
        SOP,
        SPH,
        "balanced_accuracy",
        SMOOTH,
        0.05,
        postictal_s=POSTICTAL,
    )
    assert report["n_seizures"] == 9 and report["sensitivity"] >= 7 / 9
    assert report["p_value"] < 0.05 and report["p_value_surrogate"] < 0.05
    assert report["sensitivity_ci95"][0] < report["sensitivity"] <= report["sensitivity_ci95"][1]
    assert 0 < report["time_in_warning"] < 1 and report["fpr_per_h_ci95"][0] <= report["fpr_per_h"]
    # every window of every recording scored exactly once
    assert oof["window_id"].is_unique and set(oof["window_id"]) == set(windows["window_id"])
    assert oof["alarm"].sum() >= report["n_alarms"] >= 1  # alarms in ictal or postictal time are not counted
