"""EEG windows, labels, splits and folds (tasks/label/windows.py, splits.py, eeg.py), on hand-made timelines."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from tasks.config import EegLabelConfig
from tasks.eeg_windows import (
    EXCLUDED,
    INTERICTAL,
    PREICTAL,
    WINDOW_COLUMNS,
    fold_masks,
)
from tasks.label.eeg import label_windows
from tasks.label.splits import detection_splits, prediction_folds
from tasks.label.windows import (
    label_prediction,
    leading_seizures,
    make_windows,
    prediction_feasibility,
    too_short_for_a_window,
)

SOP, SPH = 1800.0, 300.0  # Truong et al. 2018


def recordings_table(rows: list[tuple]) -> pd.DataFrame:
    """rows: (recording_id, patient, duration_s, start_offset_s)."""
    df = pd.DataFrame(rows, columns=["recording_id", "patient", "duration_s", "start_offset_s"])
    df["path"] = df["recording_id"] + ".edf"
    df["sfreq_in"] = 256.0
    df["n_seizures"] = 0
    return df


def seizures_table(rows: list[tuple]) -> pd.DataFrame:
    """rows: (recording_id, seizure_id, onset_s, offset_s)."""
    df = pd.DataFrame(rows, columns=["recording_id", "seizure_id", "onset_s", "offset_s"])
    df["patient"] = df["recording_id"].str.split("_").str[0]
    return df


# --------------------------------------------------------------------------------------------- windows
def test_make_windows_hand_example() -> None:
    # sfreq 4 Hz, 4-s windows every 2 s. r1 lasts 21 s: grid starts 0, 2, ..., 16 plus one window [17, 21) aligned
    # with the end. Seizure A [5, 9) crosses window boundaries; seizure B [20.2, 21) sits in the last second.
    rec = recordings_table([("p1_r1", "p1", 21.0, 0.0), ("p1_r2", "p1", 7.0, np.nan), ("p1_r3", "p1", 3.0, np.nan)])
    sz = seizures_table([("p1_r1", "A", 5.0, 9.0), ("p1_r1", "B", 20.2, 21.0)])
    w = make_windows(rec, sz, sfreq=4.0, window_s=4.0, step_s=2.0)

    assert list(w.columns) == WINDOW_COLUMNS
    r1 = w[w["recording_id"] == "p1_r1"]
    assert r1["start_s"].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 17]
    assert r1["start_sample"].tolist() == [0, 8, 16, 24, 32, 40, 48, 56, 64, 68]
    assert (r1["end_s"] - r1["start_s"] == 4.0).all()
    assert r1["window_id"].iloc[1] == "p1_r1:8"
    ictal = dict(zip(r1["start_s"], r1["ictal"], strict=True))
    # [2, 6): 1 s of A (< half) but holds A's onset -> ictal; [4, 8) and [6, 10): 3 s -> ictal;
    # [8, 12): 1 s, no onset -> not ictal but still named; [17, 21) holds B's onset -> ictal.
    assert ictal == {0: 0, 2: 1, 4: 1, 6: 1, 8: 0, 10: 0, 12: 0, 14: 0, 16: 0, 17: 1}
    sid = dict(zip(r1["start_s"], r1["seizure_id"], strict=True))
    assert sid[2] == sid[4] == sid[6] == sid[8] == "A" and sid[17] == "B" and sid[16] == "" and sid[0] == ""
    # r2 (7 s): windows [0, 4), [2, 6) and the end-aligned [3, 7); r3 is shorter than one window.
    assert w.loc[w["recording_id"] == "p1_r2", "start_s"].tolist() == [0, 2, 3]
    assert not (w["recording_id"] == "p1_r3").any()
    assert len(w) == 13


def test_make_windows_is_vectorised_and_rejects_bad_input() -> None:
    rec = recordings_table([("p1_r1", "p1", 8 * 3600.0, 0.0)])
    sz = seizures_table([("p1_r1", "s1", 3600.0, 3660.0)])
    t0 = time.perf_counter()
    w = make_windows(rec, sz, sfreq=256.0, window_s=4.0, step_s=1.0)
    assert time.perf_counter() - t0 < 1.0
    assert len(w) == 8 * 3600 - 3
    assert w["ictal"].sum() == 62  # overlap >= 2 s: starts 3598..3658 (61), plus 3597 holding the onset

    with pytest.raises(ValueError, match="offset_s > onset_s"):
        make_windows(rec, seizures_table([("p1_r1", "s1", 10.0, 5.0)]), 256.0, 4.0, 1.0)
    with pytest.raises(ValueError, match="unique"):
        make_windows(rec, seizures_table([("p1_r1", "s1", 1.0, 5.0), ("p1_r1", "s1", 9.0, 12.0)]), 256.0, 4.0, 1.0)
    with pytest.raises(ValueError, match="missing from recordings"):
        make_windows(rec, seizures_table([("p9_r1", "s1", 1.0, 5.0)]), 256.0, 4.0, 1.0)


# --------------------------------------------------------------------------------------------- prediction labels
def test_recordings_shorter_than_one_window_are_quarantined_naming_label_window_s() -> None:
    """Clips of any length pass ingest; a clip with less than one window's samples gives no window, so the label
    stage leaves it out with a reason naming its own setting (issue #12)."""
    recs = recordings_table([("p_a", "p", 3.99, None), ("p_b", "p", 4.0, None), ("p_c", "p", 23.6, None)])
    kept, rows = too_short_for_a_window(recs, 256.0, 4.0)
    assert kept["recording_id"].tolist() == ["p_b", "p_c"]
    assert rows == [
        {
            "path": "p_a.edf",
            "stage": "label",
            "reason": "p_a.edf: 3.99 s of data, shorter than one window of label.window_s = 4 s; lower "
            "label.window_s to use it",
        }
    ]
    assert len(make_windows(kept, seizures_table([]), 256.0, 4.0, 4.0)) == 1 + 6


def test_seizure_ten_minutes_after_another_is_not_leading() -> None:
    # Two consecutive files of one patient; s2 starts 10 min after s1 ended, in the next file.
    rec = recordings_table([("p1_a", "p1", 3600.0, 0.0), ("p1_b", "p1", 3600.0, 3610.0)])
    sz = seizures_table([("p1_a", "s1", 3000.0, 3060.0), ("p1_b", "s2", 3660.0 + 600.0 - 3610.0, 4300.0 - 3610.0)])
    table = leading_seizures(rec, sz, SOP, SPH).set_index("seizure_id")
    assert table.loc["s1", "leading"] and not table.loc["s2", "leading"]
    assert table.loc["s2", "t_onset_s"] == pytest.approx(4260.0)
    assert table.loc["s1", "preictal_coverage"] == pytest.approx(1.0)
    assert table.loc["s1", "qualifies"] and not table.loc["s2", "qualifies"]

    # Without clock times each file is its own timeline: s2 then looks leading, but only 650 s of the 2100 s
    # before it were recorded, so it does not qualify for preictal windows.
    unknown = rec.assign(start_offset_s=np.nan)
    table = leading_seizures(unknown, sz, SOP, SPH).set_index("seizure_id")
    assert table.loc["s2", "leading"]
    assert table.loc["s2", "preictal_coverage"] == pytest.approx(650.0 / 2100.0)
    assert not table.loc["s2", "qualifies"]


def test_prediction_zones_on_a_hand_timeline() -> None:
    # 1 Hz, 60-s windows every 60 s on one 2-h file; seizure [3600, 3660); SOP 600, SPH 120, gap 1200, post 300.
    rec = recordings_table([("p1_r1", "p1", 7200.0, 0.0)])
    sz = seizures_table([("p1_r1", "s1", 3600.0, 3660.0)])
    w = make_windows(rec, sz, sfreq=1.0, window_s=60.0, step_s=60.0)
    lab = label_prediction(w, rec, sz, sop_s=600.0, sph_s=120.0, interictal_gap_s=1200.0, postictal_s=300.0)
    by_start = dict(zip(lab["start_s"].astype(int), lab["pred_label"], strict=True))

    preictal = set(range(2880, 3480, 60))  # inside [3600 - 720, 3600 - 120]
    interictal = set(range(0, 2400, 60)) | set(range(4860, 7200, 60))  # end <= 2400 or start >= 4860
    assert {s for s, v in by_start.items() if v == PREICTAL} == preictal
    assert {s for s, v in by_start.items() if v == INTERICTAL} == interictal
    excluded = {s for s, v in by_start.items() if v == EXCLUDED}
    assert {3480, 3540} <= excluded  # SPH
    assert {3600} | set(range(3660, 3960, 60)) <= excluded  # ictal, postictal
    assert set(range(2400, 2880, 60)) | set(range(3960, 4860, 60)) <= excluded  # gap zones
    assert len(preictal) + len(interictal) + len(excluded) == 120
    assert (lab.loc[lab["pred_label"] == PREICTAL, "lead_seizure_id"] == "s1").all()
    assert (lab.loc[lab["pred_label"] != PREICTAL, "lead_seizure_id"] == "").all()


def test_interictal_gap_uses_the_patient_timeline() -> None:
    # A seizure-free file that starts 20 min after a seizure in the previous file is not interictal (gap 1 h)...
    rec = recordings_table([("p1_a", "p1", 3600.0, 0.0), ("p1_b", "p1", 3600.0, 3600.0)])
    sz = seizures_table([("p1_a", "s1", 2340.0, 2400.0)])
    w = make_windows(rec, sz, sfreq=1.0, window_s=60.0, step_s=60.0)
    lab = label_prediction(w, rec, sz, sop_s=600.0, sph_s=60.0, interictal_gap_s=3600.0, postictal_s=300.0)
    b = lab[lab["recording_id"] == "p1_b"]
    assert (b.loc[b["t_start_s"] < 2400 + 3600, "pred_label"] == EXCLUDED).all()
    assert (b.loc[b["t_start_s"] >= 2400 + 3600, "pred_label"] == INTERICTAL).all()
    # ...but without clock times it cannot be placed, and all of it counts as interictal.
    lab = label_prediction(
        w, rec.assign(start_offset_s=np.nan), sz, sop_s=600.0, sph_s=60.0, interictal_gap_s=3600.0, postictal_s=300.0
    )
    assert (lab.loc[lab["recording_id"] == "p1_b", "pred_label"] == INTERICTAL).all()


def _long_patient(n_seizures: int = 3, seizure_free_h: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One patient: a 2-h file per seizure (onset at 1.5 h) then seizure-free 1-h files, all consecutive."""
    rows, sz_rows, t = [], [], 0.0
    for i in range(n_seizures):
        rows.append((f"p1_s{i}", "p1", 7200.0, t))
        sz_rows.append((f"p1_s{i}", f"p1_s{i}_sz", 5400.0, 5460.0))
        t += 7200.0
    for i in range(seizure_free_h):
        rows.append((f"p1_f{i}", "p1", 3600.0, t))
        t += 3600.0
    return recordings_table(rows), seizures_table(sz_rows)


def _label(rec: pd.DataFrame, sz: pd.DataFrame, gap: float) -> pd.DataFrame:
    w = make_windows(rec, sz, 1.0, 60.0, 60.0)
    return label_prediction(w, rec, sz, SOP, SPH, interictal_gap_s=gap, postictal_s=600.0)


def test_prediction_feasibility_reasons() -> None:
    kw = {"sop_s": SOP, "sph_s": SPH}
    rec, sz = _long_patient(3)
    w = make_windows(rec, sz, 1.0, 60.0, 60.0)
    lab = label_prediction(w, rec, sz, interictal_gap_s=3600.0, postictal_s=600.0, **kw)
    assert prediction_feasibility(lab, rec, sz, **kw) == (True, "")

    # Seizure one minute into a file of unknown position: no preictal recording.
    rec1 = recordings_table([("p2_a", "p2", 7200.0, np.nan)])
    sz1 = seizures_table([("p2_a", "early", 60.0, 120.0)])
    lab1 = _label(rec1, sz1, gap=3600.0)
    ok, reason = prediction_feasibility(lab1, rec1, sz1, **kw)
    assert not ok and "no leading seizure has SOP + SPH = 35 min of recording" in reason

    # One usable leading seizure only.
    rec2, sz2 = _long_patient(1)
    lab2 = _label(rec2, sz2, gap=3600.0)
    ok, reason = prediction_feasibility(lab2, rec2, sz2, **kw)
    assert not ok and "needs at least 2" in reason

    # Two seizures but nothing far enough from them to be interictal.
    rec3, sz3 = _long_patient(2, seizure_free_h=0)
    lab3 = _label(rec3, sz3, gap=4 * 3600.0)
    ok, reason = prediction_feasibility(lab3, rec3, sz3, **kw)
    assert not ok and "interictal" in reason

    with pytest.raises(ValueError, match="raise interictal_gap_s"):
        label_prediction(w, rec, sz, interictal_gap_s=600.0, postictal_s=600.0, **kw)


# --------------------------------------------------------------------------------------------- splits and folds
def test_detection_splits_never_share_a_recording() -> None:
    rows = []
    for p, n_sz in (("p1", 4), ("p2", 2), ("p3", 1)):
        rows += [(f"{p}_sz{i}", p, 60.0, np.nan) for i in range(n_sz)]
        rows += [(f"{p}_bg{i}", p, 60.0, np.nan) for i in range(6)]
    rec = recordings_table(rows)
    sz = seizures_table([(r, f"{r}_x", 10.0, 30.0) for r in rec["recording_id"] if "_sz" in r])
    rec["n_seizures"] = rec["recording_id"].str.contains("_sz").astype(int)
    w = make_windows(rec, sz, 1.0, 10.0, 5.0)
    out = detection_splits(w, rec, test_fraction=0.3, val_fraction=0.2, seed=3)

    assert out.groupby("recording_id")["split"].nunique().max() == 1
    split_of = out.groupby("recording_id")["split"].first()
    for p in ("p1", "p2"):
        sz_splits = set(split_of[[r for r in split_of.index if r.startswith(f"{p}_sz")]])
        assert {"train", "test"} <= sz_splits
    assert split_of["p3_sz0"] == "train"  # a lone seizure recording stays in train
    assert "val" in set(split_of[[r for r in split_of.index if r.startswith("p1_sz")]])
    pd.testing.assert_frame_equal(out, detection_splits(w, rec, 0.3, 0.2, seed=3))

    # Every patient with a single seizure recording: one of them moves to test so test still has a seizure.
    lone = rec[rec["recording_id"].str.contains("sz0|bg")]
    out = detection_splits(w[w["recording_id"].isin(lone["recording_id"])], lone, 0.3, 0.0, seed=0)
    split_of = out.groupby("recording_id")["split"].first()
    assert (split_of[[r for r in split_of.index if "_sz" in r]] == "test").sum() == 1


def test_loso_folds_test_whole_recordings_once() -> None:
    rec, sz = _long_patient(3, seizure_free_h=6)
    other = recordings_table([("p2_a", "p2", 3 * 3600.0, 0.0), ("p2_b", "p2", 3600.0, 3 * 3600.0)])  # no seizures
    rec = pd.concat([rec, other], ignore_index=True)
    w = make_windows(rec, sz, 1.0, 60.0, 30.0)  # overlapping windows
    lab = label_prediction(w, rec, sz, SOP, SPH, interictal_gap_s=3600.0, postictal_s=600.0)
    folds = prediction_folds(lab, "loso")

    assert sorted(set(folds["fold"])) == [0, 1, 2]  # every window of every recording is in a test fold
    assert (folds.groupby("recording_id")["fold"].nunique() == 1).all()  # the unit is the whole recording
    assert set(folds.loc[folds["pred_label"] == EXCLUDED, "fold"]) <= {0, 1, 2}  # excluded windows are scored too
    fold_of = folds.groupby("recording_id")["fold"].first()
    for k in range(3):
        train, test = fold_masks(folds, k)
        lead = folds.loc[test & (folds["pred_label"] == PREICTAL), "lead_seizure_id"].unique()
        assert len(lead) == 1 and fold_of[f"p1_s{k}"] == k
        assert not (train & (folds["lead_seizure_id"] == lead[0])).any()
        assert not (train & test).any()
    # the seizure-free files of p1 are cut into one contiguous run per fold, in time order
    free = [fold_of[f"p1_f{i}"] for i in range(6)]
    assert free == sorted(free) and set(free) == {0, 1, 2}
    assert {fold_of["p2_a"], fold_of["p2_b"]} == {0, 1}  # a patient without seizures: dealt round-robin

    lopo = prediction_folds(lab, "lopo")
    assert set(lopo.loc[lopo["patient"] == "p1", "fold"]) == {0}
    assert set(lopo.loc[lopo["patient"] == "p2", "fold"]) == {1}
    with pytest.raises(ValueError, match="unknown fold scheme"):
        prediction_folds(lab, "kfold")  # type: ignore[arg-type]


def test_loso_folds_keep_a_preictal_period_that_spans_two_files_together() -> None:
    """A file that starts inside a preictal period: both files go to the seizure's fold."""
    rec = recordings_table(
        [
            ("a1", "p", 3600.0, 0.0),
            ("a2", "p", 3600.0, 3600.0),
            ("b1", "p", 7200.0, 7200.0),
            ("c", "p", 3600.0, 14400.0),
        ]
    )
    sz = seizures_table([("a2", "a2_sz", 600.0, 660.0), ("b1", "b1_sz", 5400.0, 5460.0)])
    w = make_windows(rec, sz, 1.0, 60.0, 60.0)
    lab = label_prediction(w, rec, sz, SOP, SPH, interictal_gap_s=3600.0, postictal_s=600.0)
    fold_of = prediction_folds(lab).groupby("recording_id")["fold"].first()
    assert fold_of["a1"] == fold_of["a2"] == 0 and fold_of["b1"] == 1


# --------------------------------------------------------------------------------------------- the stage's steps
def test_label_windows_runs_every_step_in_order() -> None:
    rec, sz = _long_patient(3, seizure_free_h=6)
    cfg = EegLabelConfig(window_s=60.0, step_s=60.0, sop_s=SOP, sph_s=SPH, interictal_gap_s=3600.0, postictal_s=600.0)
    windows, leading, feasible, reason = label_windows(rec, sz, 1.0, cfg, seed=0)

    assert feasible and reason == ""
    expected = make_windows(rec, sz, 1.0, 60.0, 60.0)
    expected = detection_splits(expected, rec, cfg.test_fraction, cfg.val_fraction, 0)
    expected = label_prediction(expected, rec, sz, SOP, SPH, 3600.0, 600.0)
    pd.testing.assert_frame_equal(windows, prediction_folds(expected, "loso"))
    pd.testing.assert_frame_equal(leading, leading_seizures(rec, sz, SOP, SPH))

    rec2, sz2 = _long_patient(1)
    windows, _, feasible, reason = label_windows(rec2, sz2, 1.0, cfg, seed=0)
    assert not feasible and "at least 2" in reason and "fold" not in windows.columns
