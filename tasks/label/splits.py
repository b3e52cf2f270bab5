"""Leakage-free evaluation splits of the labelled EEG windows: whole recordings for detection, seizure folds for
prediction.

Windows of one recording are strongly correlated (and overlap), and neighbouring windows on a patient timeline
nearly repeat each other, so the units here are whole recordings (:func:`detection_splits`) and, for prediction,
whole leading seizures with contiguous blocks of interictal time (:func:`prediction_folds`). Thresholds are never
chosen here: whoever trains picks a decision threshold on training (or validation) data of a split or fold only.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from tasks.eeg_windows import EXCLUDED, FOLD_TRAIN_ONLY, FOLD_UNUSED, INTERICTAL, PREICTAL, require_columns
from tasks.label.windows import require_non_negative
from tasks.time_intervals import EPS_S


def _randomised_round(x: float, rng: np.random.Generator) -> int:
    """floor(x) or ceil(x), with expectation x: small strata get their share on average, not always zero."""
    return int(math.floor(x + rng.random()))


def detection_splits(
    windows: pd.DataFrame,
    recordings: pd.DataFrame,
    test_fraction: float,
    val_fraction: float,
    seed: int,
) -> pd.DataFrame:
    """Split whole recordings into train / val / test, stratified by patient and by whether they hold a seizure.

    Windows of one recording are strongly correlated (and overlap), so the unit of the split is the recording: no
    recording has windows in two splits. Within each patient, the recordings with a seizure and those without are
    shuffled separately and ``test_fraction`` / ``val_fraction`` of each go to test / val (randomised rounding, so
    small strata get their share on average), which keeps every patient's seizures in training as well as in test.

    Seizure recordings: a patient with two or more keeps at least one in train and one in test (and, with three
    or more and ``val_fraction > 0``, one in val). A patient with a **single** seizure recording keeps it in train
    (the detector should see that patient's seizures), so that patient contributes only seizure-free test
    recordings (false alarms, no sensitivity). If that leaves the whole test split without a seizure while
    two or more seizure recordings exist, one such recording (drawn with ``seed``) moves to test: its patient's
    seizures are then tested without being trained on.

    Args:
        windows: Output of :func:`tasks.label.windows.make_windows` (``recording_id``, ``ictal``).
        recordings: ``recordings.csv`` (``recording_id``, ``patient``, optional ``n_seizures``).
        test_fraction: Share of recordings for test, in [0, 1).
        val_fraction: Share of recordings for validation (threshold choice, early stopping), in [0, 1).
        seed: Seed of the shuffle.

    Returns:
        A copy of ``windows`` with ``split`` in ``{"train", "val", "test"}``.
    """
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ValueError(
            f"test_fraction={test_fraction}, val_fraction={val_fraction}: each must be in [0, 1) and their sum < 1"
        )
    require_columns(recordings, ["recording_id", "patient"], "recordings.csv")
    require_columns(windows, ["recording_id", "ictal"], "windows")
    rng = np.random.default_rng(seed)
    rec = recordings["recording_id"].astype(str)
    ictal_recs = set(windows.loc[windows["ictal"].astype(int) == 1, "recording_id"].astype(str))
    n_sz = pd.to_numeric(recordings.get("n_seizures", pd.Series(0, index=recordings.index)), errors="coerce")
    has_sz = (n_sz.fillna(0).to_numpy() > 0) | rec.isin(ictal_recs).to_numpy()
    table = pd.DataFrame({"recording_id": rec.to_numpy(), "patient": recordings["patient"].astype(str), "sz": has_sz})

    split: dict[str, str] = {}
    single: list[str] = []  # lone seizure recordings kept in train
    for patient in sorted(table["patient"].unique()):
        for seizure_stratum in (True, False):
            ids = sorted(table.loc[(table["patient"] == patient) & (table["sz"] == seizure_stratum), "recording_id"])
            ids = [ids[i] for i in rng.permutation(len(ids))]
            n = len(ids)
            n_test = min(_randomised_round(test_fraction * n, rng), n)
            n_val = min(_randomised_round(val_fraction * n, rng), n - n_test)
            if seizure_stratum:
                if n == 1:
                    n_test, n_val = 0, 0
                    single.append(ids[0])
                elif n >= 2:
                    n_test = min(max(n_test, 1 if test_fraction > 0 else 0), n - 1)
                    n_val = min(n_val, n - 1 - n_test)
                    if val_fraction > 0 and n >= 3:
                        n_val = max(n_val, 1) if n - n_test >= 2 else n_val
            for i, r in enumerate(ids):
                split[r] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    sz_ids = set(table.loc[table["sz"], "recording_id"])
    if test_fraction > 0 and len(sz_ids) >= 2 and not any(split[r] == "test" for r in sz_ids) and single:
        split[single[int(rng.integers(len(single)))]] = "test"
    out = windows.copy()
    out["split"] = out["recording_id"].astype(str).map(split).fillna("train").to_numpy()
    return out


def _assign_interictal_blocks(
    windows: pd.DataFrame, ii: np.ndarray, seizures: pd.DataFrame, fold: np.ndarray, block_gap_s: float
) -> None:
    """Give the interictal rows ``ii`` of ``windows`` their leave-one-seizure-out fold, in place in ``fold``.

    Per patient, its interictal windows in timeline and time order are cut into one contiguous block per fold of
    that patient (``seizures``: one row per fold, indexed by fold number); block ends that would overlap (or come
    within ``block_gap_s`` of) the next block become ``FOLD_UNUSED``, and a patient without a fold gets
    ``FOLD_TRAIN_ONLY``. See :func:`prediction_folds`.
    """
    pat = windows["patient"].astype(str).to_numpy()[ii]
    tls = windows["timeline"].astype(str).to_numpy()[ii]
    starts = windows["t_start_s"].to_numpy(dtype=float)[ii]
    ends = windows["t_end_s"].to_numpy(dtype=float)[ii]
    order = np.lexsort((starts, tls, pat))  # patient, then timeline, then time
    ii, pat, tls, starts, ends = ii[order], pat[order], tls[order], starts[order], ends[order]
    patients, first = np.unique(pat, return_index=True)
    bounds = np.append(first, len(pat))
    for p, patient in enumerate(patients):
        rows = np.arange(bounds[p], bounds[p + 1])
        folds = seizures.index[seizures["patient"].astype(str) == patient].to_numpy()
        if not len(folds):
            fold[ii[rows]] = FOLD_TRAIN_ONLY
            continue
        blocks = np.array_split(rows, len(folds))
        for j, block in enumerate(blocks):
            fold[ii[block]] = folds[j]
            if j + 1 < len(blocks) and len(blocks[j + 1]) and len(block):
                nxt = blocks[j + 1][0]
                clash = (tls[block] == tls[nxt]) & (ends[block] + block_gap_s > starts[nxt] + EPS_S)
                fold[ii[block[clash]]] = FOLD_UNUSED


def prediction_folds(
    windows: pd.DataFrame, scheme: Literal["loso", "lopo"] = "loso", block_gap_s: float = 0.0
) -> pd.DataFrame:
    """Cross-validation folds for seizure prediction that never put neighbouring windows in train and test.

    **loso** (leave one seizure out, the default): each qualifying leading seizure (one with preictal windows) is
    one fold, numbered in patient, timeline and time order. Fold k's test set is that seizure's preictal windows
    plus one contiguous block of the same patient's interictal windows: the patient's interictal windows, in time
    order, are cut into as many blocks of (nearly) equal count as the patient has such seizures, and block j goes
    to the patient's j-th seizure, i.e. to the seizure nearest to it in the ordering. Random assignment would put
    a test window between two training windows a few seconds apart; contiguous blocks leave only the block ends as
    neighbours, and windows at the end of a block that would overlap (or come within ``block_gap_s`` of) the next
    block are dropped (``FOLD_UNUSED``). Interictal windows of a patient without such a seizure are
    ``FOLD_TRAIN_ONLY``. Every other window with a label is in the training set of fold k, other patients
    included; a caller wanting patient-specific models filters by ``patient``.

    **lopo** (leave one patient out): fold = the patient's index (sorted names) for every labelled window.

    Decision thresholds must be chosen on each fold's training windows only (the caller's job, e.g. with
    :func:`tasks.metrics.choose_threshold`), never on its test windows.

    Args:
        windows: Output of :func:`tasks.label.windows.label_prediction`.
        scheme: ``"loso"`` or ``"lopo"``.
        block_gap_s: Extra seconds kept free between consecutive interictal blocks (0: blocks share no sample).

    Returns:
        A copy of ``windows`` with an integer ``fold``: the test fold, ``FOLD_TRAIN_ONLY`` (-1) or
        ``FOLD_UNUSED`` (-2, excluded windows). Use :func:`tasks.eeg_windows.fold_masks` to get a fold's train and
        test rows.
    """
    require_columns(
        windows, ["patient", "pred_label", "lead_seizure_id", "timeline", "t_start_s", "t_end_s"], "windows"
    )
    require_non_negative("block_gap_s", block_gap_s)
    out = windows.copy()
    label = out["pred_label"].to_numpy()
    fold = np.full(len(out), FOLD_UNUSED, dtype=np.int64)
    if scheme == "lopo":
        codes, _ = pd.factorize(out["patient"].astype(str), sort=True)
        fold[label != EXCLUDED] = codes[label != EXCLUDED]
        out["fold"] = fold
        return out
    if scheme != "loso":
        raise ValueError(
            f"unknown fold scheme {scheme!r}; use 'loso' (leave one seizure out) or 'lopo' (leave one patient out)"
        )

    pre = out[label == PREICTAL]
    seizures = (
        pre.groupby("lead_seizure_id", sort=False)
        .agg(patient=("patient", "first"), timeline=("timeline", "first"), t=("t_start_s", "min"))
        .reset_index()
        .sort_values(["patient", "timeline", "t"], kind="stable")
        .reset_index(drop=True)
    )
    fold_of = dict(zip(seizures["lead_seizure_id"], seizures.index, strict=True))
    is_pre = label == PREICTAL
    fold[is_pre] = out.loc[is_pre, "lead_seizure_id"].map(fold_of).to_numpy()

    _assign_interictal_blocks(out, np.flatnonzero(label == INTERICTAL), seizures, fold, block_gap_s)
    out["fold"] = fold
    return out
