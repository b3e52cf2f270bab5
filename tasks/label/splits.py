"""Leakage-free evaluation splits of the labelled EEG windows: whole recordings for detection, and whole
recordings per seizure fold for prediction.

Windows of one recording are strongly correlated (and overlap), so the unit here is the whole recording
(:func:`detection_splits`), and for prediction each leave-one-seizure-out fold tests whole recordings
(:func:`prediction_folds`), so the evaluation can score every recording once, in time order, as a continuous
stream. Thresholds are never chosen here: whoever trains picks a decision threshold on training (or validation)
data of a split or fold only.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from tasks.eeg_windows import FOLD_UNUSED, PREICTAL, require_columns


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


def _seizure_groups(windows: pd.DataFrame) -> list[tuple[set[str], str, str, float]]:
    """Recordings that one test fold must hold together: each qualifying leading seizure's recordings (the ones
    with its preictal windows or its onset), merged when two seizures share a recording.

    Returns:
        ``(recording ids, patient, timeline, first preictal time)`` per group, in patient, timeline and time order.
    """
    rec = windows["recording_id"].astype(str)
    pre = windows[windows["pred_label"].to_numpy() == PREICTAL]
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for sid, recs in pre.groupby("lead_seizure_id", sort=False)["recording_id"]:
        members = {f"r:{r}" for r in recs.astype(str)}
        ictal = windows["seizure_id"].astype(str).to_numpy() == str(sid)
        members |= {f"r:{r}" for r in rec[ictal]}
        members.add(f"s:{sid}")
        first, *rest = sorted(members)
        for m in rest:
            parent[root(m)] = root(first)
    groups: dict[str, set[str]] = {}
    for m in list(parent):
        if m.startswith("r:"):
            groups.setdefault(root(m), set()).add(m[2:])
    first_t = pre.groupby(pre["recording_id"].astype(str))["t_start_s"].min()
    meta = windows.groupby(rec).agg(patient=("patient", "first"), timeline=("timeline", "first"))
    out = []
    for recs in groups.values():
        t = min(float(first_t[r]) for r in recs if r in first_t.index)
        r0 = sorted(recs)[0]
        out.append((recs, str(meta.loc[r0, "patient"]), str(meta.loc[r0, "timeline"]), t))
    return sorted(out, key=lambda g: (g[1], g[2], g[3]))


def _spread_other_recordings(
    windows: pd.DataFrame, fold_of: dict[str, int], patient_folds: dict[str, list[int]]
) -> None:
    """Give every recording not yet in a fold a fold, in place in ``fold_of``.

    Per patient, its other recordings in timeline and time order are cut into one contiguous run per fold of that
    patient (:func:`numpy.array_split`); a patient without a fold has its recordings dealt round-robin over all
    folds, so each recording is still tested exactly once, by a model that never saw it.
    """
    all_folds = sorted({k for ks in patient_folds.values() for k in ks})
    order = (
        windows.assign(_rec=windows["recording_id"].astype(str))
        .groupby("_rec")
        .agg(patient=("patient", "first"), timeline=("timeline", "first"), t=("t_start_s", "min"))
        .sort_values(["patient", "timeline", "t"], kind="stable")
    )
    order = order[~order.index.isin(list(fold_of))]
    dealt = 0
    for patient, part in order.groupby(order["patient"].astype(str), sort=True):
        folds = patient_folds.get(patient)
        if folds:
            for j, block in enumerate(np.array_split(part.index.to_numpy(), len(folds))):
                fold_of.update({r: folds[j] for r in block})
        else:
            for r in part.index:
                fold_of[r] = all_folds[dealt % len(all_folds)]
                dealt += 1


def prediction_folds(windows: pd.DataFrame, scheme: Literal["loso", "lopo"] = "loso") -> pd.DataFrame:
    """Cross-validation folds for seizure prediction over whole recordings, so every recording is scored once,
    as a continuous stream, by a model that never saw any of it (pseudo-prospective evaluation).

    **loso** (leave one seizure out, the default): each qualifying leading seizure (one with preictal windows) is
    one fold, numbered in patient, timeline and time order; the fold holds every recording with that seizure's
    preictal windows or its onset (seizures that share a recording share a fold). Every other recording goes to
    one fold too: per patient, its remaining recordings in time order are cut into one contiguous run per fold of
    that patient, and the recordings of a patient without such a seizure are dealt round-robin over all folds. All
    windows of a recording carry its fold, excluded ones (SPH, ictal, postictal, gap zones) included, because the
    evaluation scores the whole recording; training uses only the labelled windows (``pred_label >= 0``) of the
    other folds. The unit is the recording: windows of one recording never sit in train and test.

    **lopo** (leave one patient out): fold = the patient's index (sorted names) for every window.

    Decision thresholds must be chosen on each fold's training recordings only (the caller's job), never on its
    test recordings.

    Args:
        windows: Output of :func:`tasks.label.windows.label_prediction` (plus ``seizure_id`` of ictal windows).

    Returns:
        A copy of ``windows`` with an integer ``fold`` (the test fold of the window's recording; ``FOLD_UNUSED``
        only for a recording on no fold's list, which happens only without any qualifying seizure). Use
        :func:`tasks.eeg_windows.fold_masks` to get a fold's train and test rows.
    """
    require_columns(
        windows, ["recording_id", "patient", "pred_label", "lead_seizure_id", "timeline", "t_start_s"], "windows"
    )
    out = windows.copy()
    if "seizure_id" not in out.columns:
        out["seizure_id"] = ""
    rec = out["recording_id"].astype(str).to_numpy()
    if scheme == "lopo":
        codes, _ = pd.factorize(out["patient"].astype(str), sort=True)
        return windows.assign(fold=codes.astype(np.int64))
    if scheme != "loso":
        raise ValueError(
            f"unknown fold scheme {scheme!r}; use 'loso' (leave one seizure out) or 'lopo' (leave one patient out)"
        )
    fold_of: dict[str, int] = {}
    patient_folds: dict[str, list[int]] = {}
    for k, (recs, patient, _, _) in enumerate(_seizure_groups(out)):
        fold_of.update({r: k for r in recs})
        patient_folds.setdefault(patient, []).append(k)
    if fold_of:
        _spread_other_recordings(out, fold_of, patient_folds)
    fold = np.array([fold_of.get(r, FOLD_UNUSED) for r in rec], dtype=np.int64)
    return windows.assign(fold=fold)
