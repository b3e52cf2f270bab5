"""EEG windows and their labels: fixed windows with detection labels, patient timelines, and prediction labels.

The EEG ingest stage leaves a folder with ``recordings.csv`` (``recording_id, patient, path, duration_s, sfreq_in,
start_offset_s, n_seizures``), ``seizures.csv`` (``recording_id, patient, seizure_id, onset_s, offset_s``, seconds
from the recording's start), ``channels.json`` and ``signals/<recording_id>.npy`` (float32, ``(n_chans,
n_samples)`` at one common ``sfreq``). Everything here works on those two tables and never loads a signal.

Two tasks share the windows:

* **Detection** (is this window ictal?) labels each window from its overlap with the annotated seizures and is
  evaluated on whole held-out recordings (:func:`tasks.label.splits.detection_splits`).
* **Prediction** (will a seizure start soon?) follows the seizure occurrence period (SOP) / seizure prediction
  horizon (SPH) framework of Maiwald et al. 2004 and Winterhalder et al. 2003: an alarm is correct when a seizure
  starts between SPH and SPH + SOP after it. Defaults used by the flow are SOP = 30 min and SPH = 5 min, as Truong
  et al. 2018 (Neural Networks 105) on CHB-MIT. Only *leading* seizures (no other seizure shortly before) have a
  clean preictal period; interictal windows are far from every seizure; everything in between is excluded, and
  folds are leave-one-seizure-out (:func:`tasks.label.splits.prediction_folds`).

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

import numpy as np
import pandas as pd

from tasks.eeg_windows import EXCLUDED, INTERICTAL, PREICTAL, require_columns
from tasks.time_intervals import EPS_S

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


def require_non_negative(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite number of seconds >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={value}: must be >= 0 seconds")


# --------------------------------------------------------------------------------------------- windows
def _window_grid(n_samples: np.ndarray, win: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The window grid of :func:`make_windows`, in samples.

    Returns:
        Per recording, its number of windows and the index of its first window; per window, its recording's index
        and its start sample (every ``step``, plus one last window aligned with the recording's end).
    """
    last = n_samples - win  # start of a window that ends with the recording
    counts = np.where(last >= 0, -(-np.maximum(last, 0) // step) + 1, 0)  # ceil(last / step) + 1
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    rec_idx = np.repeat(np.arange(len(n_samples)), counts)
    k = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    return counts, first, rec_idx, np.minimum(k * step, last[rec_idx])


def _ictal_labels(
    seizures: pd.DataFrame,
    rec_ids: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    half_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The ictal rule of :func:`make_windows`: per window, ``ictal`` (0/1) and the ``seizure_id`` it overlaps most.

    Args:
        seizures: ``seizures.csv``.
        rec_ids: Recording ids in ``recordings.csv`` order.
        first: Index of each recording's first window.
        counts: Windows per recording.
        start_s: Window starts in seconds from the recording's start.
        end_s: Window ends in seconds.
        half_s: Half a window in seconds (the overlap that makes a window ictal).
    """
    total = len(start_s)
    ictal = np.zeros(total, dtype=np.int64)
    best = np.zeros(total)  # largest overlap so far, seconds
    sz_index = np.full(total, -1, dtype=np.int64)
    row_of = {r: i for i, r in enumerate(rec_ids)}
    sz = seizures.assign(_rec=seizures["recording_id"].astype(str)).sort_values(["_rec", "onset_s"], kind="stable")
    sz_ids = sz["seizure_id"].astype(str).to_numpy()
    bounds = zip(sz["_rec"], sz["onset_s"].astype(float), sz["offset_s"].astype(float), strict=True)
    for j, (rec, onset, offset) in enumerate(bounds):
        r = row_of[rec]
        lo, hi = first[r], first[r] + counts[r]
        a, b = start_s[lo:hi], end_s[lo:hi]
        overlap = np.clip(np.minimum(b, offset) - np.maximum(a, onset), 0.0, None)
        ictal[lo:hi] |= ((overlap >= half_s - EPS_S) | ((a <= onset) & (onset < b))).astype(np.int64)
        better = overlap > best[lo:hi]
        best[lo:hi] = np.where(better, overlap, best[lo:hi])
        sz_index[lo:hi] = np.where(better, j, sz_index[lo:hi])
    return ictal, np.where(sz_index >= 0, np.append(sz_ids, "")[sz_index], "")


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
    counts, first, rec_idx, start_sample = _window_grid(n_samples, win, step)
    start_s = start_sample / sfreq
    end_s = (start_sample + win) / sfreq
    ictal, seizure_id = _ictal_labels(seizures, rec_ids, first, counts, start_s, end_s, 0.5 * win / sfreq)
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
            "seizure_id": seizure_id,
        }
    )
    return out


def too_short_for_a_window(
    recordings: pd.DataFrame, sfreq: float, window_s: float
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Split off the recordings shorter than one window: :func:`make_windows` would cut none from them.

    Clip data sets (segments of seconds cut around events) hold files of every length, and ingest keeps any
    length (``ingest.min_duration_s`` is 0 by default), so the label stage, which knows the window, decides. It
    names ``label.window_s`` in the reason: the setting of this stage that would let the recording in.

    Args:
        recordings: ``recordings.csv`` (``recording_id``, ``path``, ``duration_s``).
        sfreq: Sampling rate of the stored signals in Hz.
        window_s: Window length in seconds.

    Returns:
        The recordings that give at least one window, and one quarantine row ``{path, stage, reason}`` per
        recording left out.
    """
    _positive("window_s", window_s)
    n_samples = np.floor(recordings["duration_s"].astype(float).to_numpy() * sfreq + 1e-6)
    short = n_samples < int(round(window_s * sfreq))
    rows = [
        {
            "path": str(row.get("path") or row["recording_id"]),
            "stage": "label",
            "reason": f"{Path(str(row.get('path') or row['recording_id'])).name}: {float(row['duration_s']):g} s of "
            f"data, shorter than one window of label.window_s = {window_s:g} s; lower label.window_s to use it",
        }
        for row in recordings[short].to_dict("records")
    ]
    return recordings[~short].reset_index(drop=True), rows


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
    require_non_negative("sop_s", sop_s)
    require_non_negative("sph_s", sph_s)
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
    out["leading"] = (prev_end.isna() | (prev_end <= out["t_onset_s"] - horizon + EPS_S)).astype(bool)
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
def _timeline_labels(
    a: np.ndarray,
    b: np.ndarray,
    seizures: pd.DataFrame,
    sop_s: float,
    sph_s: float,
    interictal_gap_s: float,
    postictal_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The rules of :func:`label_prediction` for the windows ``[a, b)`` of one timeline and its seizures
    (:func:`leading_seizures` rows): ``pred_label`` and ``lead_seizure_id`` per window."""
    excluded = np.zeros(len(a), dtype=bool)
    near = np.zeros(len(a), dtype=bool)
    pre = np.full(len(a), "", dtype=object)
    sz = seizures
    for on, off, sid, ok in zip(sz["t_onset_s"], sz["t_offset_s"], sz["seizure_id"], sz["qualifies"], strict=True):
        excluded |= (b > on + EPS_S) & (a < off + postictal_s - EPS_S)
        near |= (b > on - interictal_gap_s + EPS_S) & (a < off + interictal_gap_s - EPS_S)
        if ok:
            inside = (a >= on - sph_s - sop_s - EPS_S) & (b <= on - sph_s + EPS_S)
            pre[inside] = sid
    is_pre = (pre != "") & ~excluded
    label = np.where(excluded, EXCLUDED, np.where(is_pre, PREICTAL, np.where(near, EXCLUDED, INTERICTAL)))
    return label, np.where(is_pre, pre, "")


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
    require_non_negative("postictal_s", postictal_s)
    require_non_negative("interictal_gap_s", interictal_gap_s)
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
        label[idx], lead[idx] = _timeline_labels(a, b, sz, sop_s, sph_s, interictal_gap_s, postictal_s)
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
