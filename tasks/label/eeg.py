"""EEG windows, detection and prediction labels, leakage-free splits, and a lazy window dataset.

The EEG ingest stage leaves a folder with ``recordings.csv`` (``recording_id, patient, path, duration_s, sfreq_in,
start_offset_s, n_seizures``), ``seizures.csv`` (``recording_id, patient, seizure_id, onset_s, offset_s``, seconds
from the recording's start), ``channels.json`` and ``signals/<recording_id>.npy`` (float32, ``(n_chans,
n_samples)`` at one common ``sfreq``). Everything here works on those two tables and never loads a signal, except
:class:`WindowDataset`, which reads one window at a time from memory-mapped arrays.

Two tasks share the windows:

* **Detection** (is this window ictal?) labels each window from its overlap with the annotated seizures and is
  evaluated on whole held-out recordings (:func:`detection_splits`).
* **Prediction** (will a seizure start soon?) follows the seizure occurrence period (SOP) / seizure prediction
  horizon (SPH) framework of Maiwald et al. 2004 and Winterhalder et al. 2003: an alarm is correct when a seizure
  starts between SPH and SPH + SOP after it. Defaults used by the flow are SOP = 30 min and SPH = 5 min, as Truong
  et al. 2018 (Neural Networks 105) on CHB-MIT. Only *leading* seizures (no other seizure shortly before) have a
  clean preictal period; interictal windows are far from every seizure; everything in between is excluded, and
  folds are leave-one-seizure-out (:func:`prediction_folds`).

Time on a patient's timeline: CHB-MIT files of one patient are consecutive pieces of one long monitoring, so a
seizure at the end of one file can sit minutes before a seizure at the start of the next. When ``start_offset_s``
(seconds since the patient's first file started) is known, windows and seizures are placed on that patient
timeline and all distances (leading seizures, interictal gap, postictal zone) are measured across files. When it is
unknown (NaN/empty), the recording is its own timeline: only seizures in the same file are seen, which can call a
window interictal although a seizure happened just before the file started. Nothing better is possible without the
clock times, so ingestion should fill ``start_offset_s`` whenever the source has them.

Thresholds are never chosen here. Whoever trains picks a decision threshold on training (or validation) data of a
split or fold only, and applies it unchanged to that split's test windows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegLabelConfig
from tasks.eeg_windows import (
    EXCLUDED,
    FOLD_TRAIN_ONLY,
    FOLD_UNUSED,
    INTERICTAL,
    PREICTAL,
    SPLITS,
    require_columns,
)
from tasks.rundir import RunContext

_EPS_S = 1e-6  # float slack when comparing times in seconds (window times are sample counts / sfreq)

_RECORDING_COLUMNS = ("recording_id", "patient", "duration_s")
_SEIZURE_COLUMNS = ("recording_id", "seizure_id", "onset_s", "offset_s")


def _check_tables(recordings: pd.DataFrame, seizures: pd.DataFrame) -> None:
    require_columns(recordings, _RECORDING_COLUMNS, "recordings.csv")
    require_columns(seizures, _SEIZURE_COLUMNS, "seizures.csv")
    rec_ids = recordings["recording_id"].astype(str)
    if rec_ids.duplicated().any():
        raise ValueError(f"recordings.csv repeats recording_id {sorted(set(rec_ids[rec_ids.duplicated()]))[:5]}")
    unknown = sorted(set(seizures["recording_id"].astype(str)) - set(rec_ids))
    if unknown:
        raise ValueError(f"seizures.csv names recordings missing from recordings.csv: {unknown[:5]}")
    sz_ids = seizures["seizure_id"].astype(str)
    if sz_ids.duplicated().any():
        raise ValueError(
            f"seizure_id must be unique across seizures.csv, found repeats "
            f"{sorted(set(sz_ids[sz_ids.duplicated()]))[:5]}; "
            "prefix it with the recording id (e.g. chb01_03_sz1)"
        )
    bad = seizures[~(seizures["offset_s"].astype(float) > seizures["onset_s"].astype(float))]
    if len(bad):
        ids = bad["seizure_id"].astype(str).tolist()[:5]
        raise ValueError(f"seizures need offset_s > onset_s; check seizure_id {ids}")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value}: must be a positive number of seconds")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={value}: must be >= 0 seconds")


# --------------------------------------------------------------------------------------------- windows
def make_windows(
    recordings: pd.DataFrame, seizures: pd.DataFrame, sfreq: float, window_s: float, step_s: float
) -> pd.DataFrame:
    """Cut every recording into fixed windows and label each one ictal or not (seizure detection).

    Windows start at sample ``k * step`` for ``k = 0, 1, ...`` with ``step = round(step_s * sfreq)`` and are
    ``round(window_s * sfreq)`` samples long. When the grid leaves a tail uncovered, one last window is aligned with
    the recording's end (closer than ``step`` to the previous one), so every sample, and a seizure in the last
    seconds of a file, lies in some window. A recording holds ``floor(duration_s * sfreq)`` samples; one shorter
    than a window gives none.

    **Ictal rule.** A window is ictal (``ictal = 1``) when it overlaps one seizure for at least half of its length,
    or when a seizure onset lies inside it (``start_s <= onset_s < end_s``). The 50 % rule gives each window the
    majority label; the onset rule makes sure the first seconds of every seizure are labelled ictal (the part a
    detector must catch early) and that seizures shorter than half a window, or starting in the last window of a
    recording, are still labelled. ``seizure_id`` names the seizure a window overlaps most (ties: the earlier
    onset), for *any* overlap, so ``ictal == 0`` with a non-empty ``seizure_id`` marks windows that only graze the
    end of a seizure; a trainer may drop those as ambiguous.

    Args:
        recordings: ``recordings.csv``: ``recording_id``, ``patient``, ``duration_s`` (seconds).
        seizures: ``seizures.csv``: ``recording_id``, ``seizure_id`` (unique), ``onset_s``, ``offset_s`` (seconds
            from the recording's start).
        sfreq: Sampling rate of the stored signals in Hz.
        window_s: Window length in seconds.
        step_s: Distance between window starts in seconds (``step_s < window_s`` overlaps the windows).

    Returns:
        One row per window, in recording order then time: ``window_id`` (``"<recording_id>:<start_sample>"``),
        ``recording_id``, ``patient``, ``start_sample``, ``start_s``, ``end_s`` (seconds from the recording's
        start, exact sample times), ``ictal`` (0/1) and ``seizure_id`` (``""`` when none). Vectorised: an 8-h
        recording at 1-s steps (28,800 windows) takes milliseconds.

    Raises:
        ValueError: a missing column, a repeated id, a seizure with ``offset_s <= onset_s`` or in an unknown
            recording, or a window or step shorter than one sample.
    """
    _check_tables(recordings, seizures)
    _positive("sfreq", sfreq)
    _positive("window_s", window_s)
    _positive("step_s", step_s)
    win = int(round(window_s * sfreq))
    step = int(round(step_s * sfreq))
    if win < 1 or step < 1:
        raise ValueError(f"window_s={window_s}, step_s={step_s} at {sfreq} Hz give {win}/{step} samples; need >= 1")

    rec_ids = recordings["recording_id"].astype(str).to_numpy()
    patients = recordings["patient"].astype(str).to_numpy()
    n_samples = np.floor(recordings["duration_s"].astype(float).to_numpy() * sfreq + 1e-6).astype(np.int64)
    last = n_samples - win  # start of a window that ends with the recording
    counts = np.where(last >= 0, -(-np.maximum(last, 0) // step) + 1, 0)  # ceil(last / step) + 1
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    rec_idx = np.repeat(np.arange(len(rec_ids)), counts)
    k = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    start_sample = np.minimum(k * step, last[rec_idx])
    start_s = start_sample / sfreq
    end_s = (start_sample + win) / sfreq

    ictal = np.zeros(total, dtype=np.int64)
    best = np.zeros(total)  # largest overlap so far, seconds
    sz_index = np.full(total, -1, dtype=np.int64)
    row_of = {r: i for i, r in enumerate(rec_ids)}
    sz = seizures.assign(_rec=seizures["recording_id"].astype(str)).sort_values(["_rec", "onset_s"], kind="stable")
    sz_ids = sz["seizure_id"].astype(str).to_numpy()
    half = 0.5 * win / sfreq
    bounds = zip(sz["_rec"], sz["onset_s"].astype(float), sz["offset_s"].astype(float), strict=True)
    for j, (rec, onset, offset) in enumerate(bounds):
        r = row_of[rec]
        lo, hi = first[r], first[r] + counts[r]
        a, b = start_s[lo:hi], end_s[lo:hi]
        overlap = np.clip(np.minimum(b, offset) - np.maximum(a, onset), 0.0, None)
        ictal[lo:hi] |= ((overlap >= half - _EPS_S) | ((a <= onset) & (onset < b))).astype(np.int64)
        better = overlap > best[lo:hi]
        best[lo:hi] = np.where(better, overlap, best[lo:hi])
        sz_index[lo:hi] = np.where(better, j, sz_index[lo:hi])

    rid = rec_ids[rec_idx]
    out = pd.DataFrame(
        {
            "window_id": [f"{r}:{s}" for r, s in zip(rid.tolist(), start_sample.tolist(), strict=True)],
            "recording_id": rid,
            "patient": patients[rec_idx],
            "start_sample": start_sample,
            "start_s": start_s,
            "end_s": end_s,
            "ictal": ictal,
            "seizure_id": np.where(sz_index >= 0, np.append(sz_ids, "")[sz_index], ""),
        }
    )
    return out


# --------------------------------------------------------------------------------------------- patient timeline
def recording_timelines(recordings: pd.DataFrame) -> pd.DataFrame:
    """Where each recording sits on its patient's timeline.

    Args:
        recordings: ``recordings.csv`` with ``recording_id``, ``patient`` and optionally ``start_offset_s``.

    Returns:
        Indexed by ``recording_id``: ``patient``, ``timeline`` (the patient when ``start_offset_s`` is known,
        else ``"<patient>/<recording_id>"``: the recording alone), ``offset_s`` (the recording's start on that
        timeline) and ``duration_s``.
    """
    require_columns(recordings, _RECORDING_COLUMNS, "recordings.csv")
    offset = (
        pd.to_numeric(recordings["start_offset_s"], errors="coerce")
        if "start_offset_s" in recordings.columns
        else pd.Series(np.nan, index=recordings.index)
    ).to_numpy(dtype=float)
    known = np.isfinite(offset)
    patient = recordings["patient"].astype(str).to_numpy()
    rec = recordings["recording_id"].astype(str).to_numpy()
    timeline = np.where(known, patient, np.char.add(np.char.add(patient.astype(str), "/"), rec.astype(str)))
    return pd.DataFrame(
        {
            "patient": patient,
            "timeline": timeline,
            "offset_s": np.where(known, offset, 0.0),
            "duration_s": recordings["duration_s"].astype(float).to_numpy(),
        },
        index=pd.Index(rec, name="recording_id"),
    )


def _covered(intervals: np.ndarray, lo: float, hi: float) -> float:
    """Fraction of [lo, hi] covered by the union of ``intervals`` ``(n, 2)``."""
    if hi - lo <= 0:
        return 1.0
    clipped = np.clip(intervals, lo, hi)
    clipped = clipped[clipped[:, 1] > clipped[:, 0]]
    if not len(clipped):
        return 0.0
    clipped = clipped[np.argsort(clipped[:, 0])]
    ends = np.maximum.accumulate(clipped[:, 1])
    starts = np.maximum(clipped[:, 0], np.concatenate([[lo], ends[:-1]]))
    return float(np.clip(ends - starts, 0.0, None).sum() / (hi - lo))


def leading_seizures(
    recordings: pd.DataFrame,
    seizures: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    min_preictal_coverage: float = 0.9,
) -> pd.DataFrame:
    """Every seizure on its patient timeline, whether it is *leading*, and whether its preictal period was recorded.

    A seizure is **leading** when no other seizure of the same timeline started before it and was still going
    within ``SOP + SPH`` before its onset (``max(earlier offsets) <= onset - SOP - SPH``). Only a leading seizure
    has a preictal period that is not the postictal period of the previous one; clustered seizures are excluded
    from prediction, as in Truong et al. 2018. With SOP = 30 min and SPH = 5 min, a seizure 10 min after another
    is not leading.

    A leading seizure **qualifies** (gets preictal windows and its own fold) when the recordings of its timeline
    cover at least ``min_preictal_coverage`` of ``[onset - SOP - SPH, onset]``: a seizure two minutes into a file
    with no earlier file has no preictal data to learn from or to test on. The 0.9 default tolerates the few
    seconds CHB-MIT loses between consecutive files.

    Args:
        recordings: ``recordings.csv`` (``start_offset_s`` places files on the patient timeline when known).
        seizures: ``seizures.csv``.
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        min_preictal_coverage: Required recorded fraction of ``[onset - SOP - SPH, onset]``, in [0, 1].

    Returns:
        One row per seizure, sorted by timeline then onset: ``recording_id``, ``patient``, ``seizure_id``,
        ``onset_s``, ``offset_s`` (recording time), ``timeline``, ``t_onset_s``, ``t_offset_s`` (timeline time),
        ``leading``, ``preictal_coverage`` and ``qualifies``.
    """
    _check_tables(recordings, seizures)
    _non_negative("sop_s", sop_s)
    _non_negative("sph_s", sph_s)
    if not 0.0 <= min_preictal_coverage <= 1.0:
        raise ValueError(f"min_preictal_coverage={min_preictal_coverage}: must be a fraction in [0, 1]")
    tl = recording_timelines(recordings)
    rec = seizures["recording_id"].astype(str).to_numpy()
    out = pd.DataFrame(
        {
            "recording_id": rec,
            "patient": tl.loc[rec, "patient"].to_numpy(),
            "seizure_id": seizures["seizure_id"].astype(str).to_numpy(),
            "onset_s": seizures["onset_s"].astype(float).to_numpy(),
            "offset_s": seizures["offset_s"].astype(float).to_numpy(),
            "timeline": tl.loc[rec, "timeline"].to_numpy(),
        }
    )
    out["t_onset_s"] = out["onset_s"] + tl.loc[rec, "offset_s"].to_numpy()
    out["t_offset_s"] = out["offset_s"] + tl.loc[rec, "offset_s"].to_numpy()
    out = out.sort_values(["timeline", "t_onset_s", "seizure_id"], kind="stable").reset_index(drop=True)
    horizon = sop_s + sph_s
    prev_end = out.groupby("timeline", sort=False)["t_offset_s"].transform(lambda s: s.cummax().shift(1))
    out["leading"] = (prev_end.isna() | (prev_end <= out["t_onset_s"] - horizon + _EPS_S)).astype(bool)
    spans = {
        name: np.column_stack([g["offset_s"].to_numpy(), (g["offset_s"] + g["duration_s"]).to_numpy()])
        for name, g in tl.groupby("timeline", sort=False)
    }
    out["preictal_coverage"] = [
        _covered(spans[t], on - horizon, on) for t, on in zip(out["timeline"], out["t_onset_s"], strict=True)
    ]
    out["qualifies"] = out["leading"] & (out["preictal_coverage"] >= min_preictal_coverage - 1e-9)
    return out


# --------------------------------------------------------------------------------------------- prediction labels
def label_prediction(
    windows: pd.DataFrame,
    recordings: pd.DataFrame,
    seizures: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    interictal_gap_s: float,
    postictal_s: float,
    min_preictal_coverage: float = 0.9,
) -> pd.DataFrame:
    """Prediction labels: preictal (1), interictal (0) or excluded (-1), measured on each patient timeline.

    For a window ``[a, b)`` on the timeline, with every seizure ``[onset, offset)`` of that timeline:

    * **excluded** if it overlaps a seizure or the postictal zone ``[offset, offset + postictal_s)`` of any
      seizure (this wins over everything else);
    * **preictal** if it lies entirely inside ``[onset - SPH - SOP, onset - SPH]`` of a qualifying leading seizure
      (:func:`leading_seizures`); ``lead_seizure_id`` names that seizure. A window that straddles either end of
      that interval is excluded, so no preictal window holds SPH data;
    * **interictal** if it is at least ``interictal_gap_s`` from every seizure, before and after
      (``b <= onset - gap`` and ``a >= offset + gap``);
    * **excluded** otherwise: the SPH, the preictal zone of non-leading (or unrecorded) seizures and the gap zones
      around seizures, whose state is uncertain.

    Args:
        windows: Output of :func:`make_windows`.
        recordings: ``recordings.csv`` (``start_offset_s`` when known; see the module docstring).
        seizures: ``seizures.csv``.
        sop_s: Seizure occurrence period in seconds (30 min in Truong et al. 2018).
        sph_s: Seizure prediction horizon in seconds (5 min in Truong et al. 2018).
        interictal_gap_s: Minimum distance of an interictal window from any seizure, in seconds; at least
            ``sop_s + sph_s`` (Truong et al. use 4 h).
        postictal_s: Length of the excluded zone after each seizure's offset, in seconds.
        min_preictal_coverage: See :func:`leading_seizures`.

    Returns:
        A copy of ``windows`` plus ``timeline``, ``t_start_s``, ``t_end_s`` (timeline time), ``pred_label`` and
        ``lead_seizure_id`` (``""`` unless preictal).
    """
    require_columns(windows, ["recording_id", "start_s", "end_s"], "windows")
    _non_negative("postictal_s", postictal_s)
    _non_negative("interictal_gap_s", interictal_gap_s)
    if interictal_gap_s < sop_s + sph_s:
        raise ValueError(
            f"interictal_gap_s={interictal_gap_s} is shorter than SOP + SPH = {sop_s + sph_s}: the preictal zone "
            "of a clustered seizure could then count as interictal; raise interictal_gap_s"
        )
    table = leading_seizures(recordings, seizures, sop_s, sph_s, min_preictal_coverage)
    tl = recording_timelines(recordings)
    rec = windows["recording_id"].astype(str).to_numpy()
    unknown = sorted(set(rec) - set(tl.index))
    if unknown:
        raise ValueError(f"windows name recordings missing from recordings.csv: {unknown[:5]}")
    out = windows.copy()
    offset = tl.loc[rec, "offset_s"].to_numpy()
    out["timeline"] = tl.loc[rec, "timeline"].to_numpy()
    out["t_start_s"] = out["start_s"].to_numpy(dtype=float) + offset
    out["t_end_s"] = out["end_s"].to_numpy(dtype=float) + offset

    label = np.full(len(out), INTERICTAL, dtype=np.int64)
    lead = np.full(len(out), "", dtype=object)
    groups = out.groupby("timeline", sort=False).indices
    for timeline, sz in table.groupby("timeline", sort=False):
        idx = groups.get(timeline)
        if idx is None:
            continue
        a = out["t_start_s"].to_numpy()[idx]
        b = out["t_end_s"].to_numpy()[idx]
        excluded = np.zeros(len(idx), dtype=bool)
        near = np.zeros(len(idx), dtype=bool)
        pre = np.full(len(idx), "", dtype=object)
        for on, off, sid, ok in zip(sz["t_onset_s"], sz["t_offset_s"], sz["seizure_id"], sz["qualifies"], strict=True):
            excluded |= (b > on + _EPS_S) & (a < off + postictal_s - _EPS_S)
            near |= (b > on - interictal_gap_s + _EPS_S) & (a < off + interictal_gap_s - _EPS_S)
            if ok:
                inside = (a >= on - sph_s - sop_s - _EPS_S) & (b <= on - sph_s + _EPS_S)
                pre[inside] = sid
        is_pre = (pre != "") & ~excluded
        label[idx] = np.where(excluded, EXCLUDED, np.where(is_pre, PREICTAL, np.where(near, EXCLUDED, INTERICTAL)))
        lead[idx] = np.where(is_pre, pre, "")
    out["pred_label"] = label
    out["lead_seizure_id"] = lead
    return out


def prediction_feasibility(
    windows: pd.DataFrame,
    recordings: pd.DataFrame,
    seizures: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    min_preictal_coverage: float = 0.9,
) -> tuple[bool, str]:
    """Whether the data can support a leave-one-seizure-out prediction experiment, and if not, why.

    Checked in order: at least one leading seizure has ``SOP + SPH`` of recording before it (at least
    ``min_preictal_coverage`` of it); some windows are interictal; at least two leading seizures have preictal
    windows, since leave-one-seizure-out needs one to test and one to train.

    Args:
        windows: Output of :func:`label_prediction` (same ``sop_s``, ``sph_s``, ``min_preictal_coverage``).
        recordings: ``recordings.csv``.
        seizures: ``seizures.csv``.
        sop_s: Seizure occurrence period in seconds.
        sph_s: Seizure prediction horizon in seconds.
        min_preictal_coverage: See :func:`leading_seizures`.

    Returns:
        ``(True, "")`` when feasible, else ``(False, reason)`` with a one-sentence reason for
        ``metrics.json``'s ``prediction.reason`` that says what to change.
    """
    require_columns(windows, ["pred_label", "lead_seizure_id"], "windows (run label_prediction first)")
    table = leading_seizures(recordings, seizures, sop_s, sph_s, min_preictal_coverage)
    horizon_min = (sop_s + sph_s) / 60
    n_lead = int(table["leading"].sum())
    if not table["qualifies"].any():
        best = float(table.loc[table["leading"], "preictal_coverage"].max()) if n_lead else 0.0
        return False, (
            f"no leading seizure has SOP + SPH = {horizon_min:g} min of recording before it "
            f"({len(table)} seizures, {n_lead} leading, best recorded preictal {best * horizon_min:.1f} min); "
            "add recordings that start earlier before the seizures or shorten label.sop_s"
        )
    if not (windows["pred_label"] == INTERICTAL).any():
        return False, (
            "no window is far enough from every seizure to be interictal; add seizure-free recordings or lower "
            "label.interictal_gap_s"
        )
    n_used = windows.loc[windows["pred_label"] == PREICTAL, "lead_seizure_id"].nunique()
    if n_used < 2:
        return False, (
            f"only {n_used} leading seizure has preictal windows, and leave-one-seizure-out needs at least 2; "
            "add recordings with more seizures"
        )
    return True, ""


# --------------------------------------------------------------------------------------------- splits and folds
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
        windows: Output of :func:`make_windows` (``recording_id``, ``ictal``).
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
        windows: Output of :func:`label_prediction`.
        scheme: ``"loso"`` or ``"lopo"``.
        block_gap_s: Extra seconds kept free between consecutive interictal blocks (0: blocks share no sample).

    Returns:
        A copy of ``windows`` with an integer ``fold``: the test fold, ``FOLD_TRAIN_ONLY`` (-1) or
        ``FOLD_UNUSED`` (-2, excluded windows). Use :func:`fold_masks` to get a fold's train and test rows.
    """
    require_columns(
        windows, ["patient", "pred_label", "lead_seizure_id", "timeline", "t_start_s", "t_end_s"], "windows"
    )
    _non_negative("block_gap_s", block_gap_s)
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

    ii = np.flatnonzero(label == INTERICTAL)
    pat = out["patient"].astype(str).to_numpy()[ii]
    tls = out["timeline"].astype(str).to_numpy()[ii]
    starts = out["t_start_s"].to_numpy(dtype=float)[ii]
    ends = out["t_end_s"].to_numpy(dtype=float)[ii]
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
                clash = (tls[block] == tls[nxt]) & (ends[block] + block_gap_s > starts[nxt] + _EPS_S)
                fold[ii[block[clash]]] = FOLD_UNUSED
    out["fold"] = fold
    return out


# --------------------------------------------------------------------------------------------- Prefect task
@task(name="label", cache_policy=NO_CACHE)
def label_eeg_task(cfg: EegLabelConfig, ingest: StageResult, ctx: RunContext) -> StageResult:
    """Windows with detection labels and a recording split, plus prediction labels and folds when feasible."""
    logger = get_run_logger()
    key = stage_key("label", ingest.key, cfg, ctx.seed)

    def build(out: Path) -> dict:
        recordings = pd.read_csv(ingest.dir / "recordings.csv", dtype={"recording_id": str, "patient": str})
        seizures = pd.read_csv(ingest.dir / "seizures.csv", dtype={"recording_id": str, "patient": str})
        sfreq = float(ingest.summary["sfreq"])
        if seizures.empty:
            raise StageError(
                "no seizure is annotated in the accepted recordings (CHB-MIT summary, EDF+ annotations or "
                "<stem>_events.tsv); detection and prediction both need seizures"
            )
        try:
            windows = make_windows(recordings, seizures, sfreq, cfg.window_s, cfg.step_s)
            windows = detection_splits(windows, recordings, cfg.test_fraction, cfg.val_fraction, ctx.seed)
            windows = label_prediction(
                windows, recordings, seizures, cfg.sop_s, cfg.sph_s, cfg.interictal_gap_s, cfg.postictal_s
            )
            feasible, reason = prediction_feasibility(windows, recordings, seizures, cfg.sop_s, cfg.sph_s)
            leading = leading_seizures(recordings, seizures, cfg.sop_s, cfg.sph_s)
            if feasible:
                windows = prediction_folds(windows, cfg.scheme)
        except ValueError as exc:
            raise StageError(f"labelling failed: {exc}") from exc
        windows.to_csv(out / "windows.csv", index=False)
        leading.to_csv(out / "leading.csv", index=False)
        summary: dict = {
            "sfreq": sfreq,
            "window_s": cfg.window_s,
            "window_samples": int(round(cfg.window_s * sfreq)),
            "n_windows": len(windows),
            "n_ictal": int(windows["ictal"].sum()),
            "detection_split": {
                part: {
                    "windows": int((windows["split"] == part).sum()),
                    "ictal": int(windows.loc[windows["split"] == part, "ictal"].sum()),
                    "recordings": int(windows.loc[windows["split"] == part, "recording_id"].nunique()),
                }
                for part in SPLITS
            },
            "prediction": {"feasible": bool(feasible), "reason": reason, "sop_s": cfg.sop_s, "sph_s": cfg.sph_s},
        }
        if feasible:
            folds = sorted(int(f) for f in windows["fold"].unique() if f >= 0)
            summary["prediction"].update(
                n_folds=len(folds),
                n_preictal=int((windows["pred_label"] == PREICTAL).sum()),
                n_interictal=int((windows["pred_label"] == INTERICTAL).sum()),
                n_leading=int(leading["qualifies"].sum()) if "qualifies" in leading else None,
            )
        return summary

    result = run_stage(StageCache(ctx.cache_root), "label", key, build, ctx.refreshes("label"))
    if result.error is None:
        s = result.summary
        logger.info(
            "label: %d windows (%d ictal); detection split %s", s["n_windows"], s["n_ictal"], s["detection_split"]
        )
        p = s["prediction"]
        if p["feasible"]:
            logger.info(
                "label: prediction with SOP %.0f s, SPH %.0f s: %d folds, %d preictal, %d interictal windows",
                p["sop_s"],
                p["sph_s"],
                p["n_folds"],
                p["n_preictal"],
                p["n_interictal"],
            )
        else:
            logger.warning("label: prediction is not feasible: %s", p["reason"])
    return result
