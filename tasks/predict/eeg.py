"""Score new EEG recordings with a run's seizure detector: per window, per detected event, and review sidecars.

Input: one EDF/EDF+ file or a folder of them (searched recursively). A recording is checked against the model's
metadata before anything is computed: a missing channel or a sampling rate below the model's is refused with the
difference named (a lower rate lacks the frequencies the model learned from: upsampling cannot restore them); a
higher rate is resampled to the model's rate, and that is said. The signal then goes through the *same*
preprocessing code that prepared the training data (the ingest stage's causal filters and polyphase resampling,
handed in as ``preprocess`` by the flow or command: a stage never imports another stage) and is cut into
consecutive windows normalised like training windows (:class:`tasks.eeg_windows.WindowDataset`).

Events are runs of consecutive windows at or above the model's threshold (onset: the first window's start, offset:
the last window's end, probability: the highest window's); no smoothing, so an event is what the windows say.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.edf import EdfHeaderError, channel_key, read_edf_header
from tasks.eeg_windows import WindowDataset
from tasks.predict.model import Predictor, files_under

EDF_EXTENSIONS = (".edf",)
WINDOW_COLUMNS = ["file", "window", "start_s", "end_s", "probability", "label", "threshold"]
EVENT_COLUMNS = ["file", "onset_s", "offset_s", "duration_s", "probability", "threshold"]

#: ``preprocess(path, channels, out_path, sfreq_out=..., l_freq=..., h_freq=..., notch=...)``: writes the
#: recording's ``channels`` as a float32 ``(C, N)`` ``.npy`` at ``sfreq_out`` (the ingest stage's function).
Preprocess = Callable[..., Any]


def find_recordings(path: Path) -> list[Path]:
    """The EDF files ``path`` names: itself, or every ``.edf`` under a folder (hidden ones skipped)."""
    return files_under(path, EDF_EXTENSIONS, "an EDF file", "EDF files")


def check_recording(path: Path, meta: dict[str, Any]) -> tuple[str | None, str | None]:
    """(why the model cannot score the file, note on the resampling applied) against the model's metadata."""
    pre = meta["preprocessing"]
    try:
        header = read_edf_header(path)
    except EdfHeaderError as exc:
        return str(exc), None
    rates = {channel_key(header.labels[i]): header.samples_per_record[i] / header.record_duration_s
             for i in header.data_signals}  # fmt: skip
    expected = [channel_key(c) for c in pre["channels"]]
    missing = [c for c, k in zip(pre["channels"], expected, strict=True) if k not in rates]
    if missing:
        found = ", ".join(header.labels[i] for i in header.data_signals) or "none"
        return (
            f"{path}: channel(s) {', '.join(missing)} missing; the model expects {len(expected)} channels "
            f"({', '.join(pre['channels'])}) and the file has {found}"
        ), None
    sfreq = float(pre["sfreq"])
    low = sorted({rates[k] for k in expected if rates[k] < sfreq})
    if low:
        return (
            f"{path}: sampled at {', '.join(f'{r:g}' for r in low)} Hz, below the model's {sfreq:g} Hz; the model "
            f"expects recordings at {sfreq:g} Hz or more (upsampling cannot restore the missing frequencies)"
        ), None
    high = sorted({rates[k] for k in expected if rates[k] != sfreq})
    note = f"{path.name}: resampled from {', '.join(f'{r:g}' for r in high)} Hz to {sfreq:g} Hz" if high else None
    return None, note


def _windows(signal_path: Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of one preprocessed recording ``(N, C, T)`` and their start samples."""
    pre = meta["preprocessing"]
    n = int(pre["window_samples"])
    total = np.load(signal_path, mmap_mode="r").shape[1]
    starts = np.arange(0, total - n + 1, n, dtype=np.int64)
    frame = pd.DataFrame({"recording_id": signal_path.stem, "start_sample": starts, "ictal": 0})
    extra = {"sfreq": float(pre["sfreq"])} if pre["normalize"] == "causal" else {}
    data = WindowDataset(frame, signal_path.parent, n, label_column="ictal", normalize=pre["normalize"], **extra)
    x = np.stack([data[i][0].numpy() for i in range(len(data))]) if len(data) else np.zeros((0, 1, n))
    return x, starts


def events_of(windows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Runs of consecutive positive windows of one file as events (see the module docstring)."""
    rows, current = [], None
    for w in windows.itertuples():
        if w.probability >= threshold:
            if current is not None and abs(w.start_s - current["offset_s"]) < 1e-6:
                current["offset_s"], current["probability"] = w.end_s, max(current["probability"], w.probability)
            else:
                current = {"file": w.file, "onset_s": w.start_s, "offset_s": w.end_s, "probability": w.probability}
                rows.append(current)
        else:
            current = None
    frame = pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "probability"])
    frame["duration_s"] = frame["offset_s"] - frame["onset_s"]
    frame["threshold"] = threshold
    return frame[EVENT_COLUMNS]


def score_recording(path: Path, predictor: Predictor, preprocess: Preprocess, work: Path) -> pd.DataFrame:
    """Window probabilities of one accepted recording (``work``: a scratch folder for the preprocessed signal)."""
    meta = predictor.meta
    pre = meta["preprocessing"]
    out = work / f"r{len(list(work.iterdir()))}.npy"
    preprocess(path, pre["channels"], out, sfreq_out=float(pre["sfreq"]), l_freq=pre.get("l_freq", 0.5),
               h_freq=pre.get("h_freq"), notch=pre.get("notch", "auto"))  # fmt: skip
    x, starts = _windows(out, meta)
    proba = predictor.probabilities(x)[:, 1] if len(x) else np.zeros(0)
    threshold = float(meta["threshold"])
    sfreq, n = float(pre["sfreq"]), int(pre["window_samples"])
    names = meta["class_names"]
    return pd.DataFrame(
        {
            "file": str(path),
            "window": np.arange(len(starts)),
            "start_s": starts / sfreq,
            "end_s": (starts + n) / sfreq,
            "probability": proba,
            "label": [names[int(p >= threshold)] for p in proba],
            "threshold": threshold,
        },
        columns=WINDOW_COLUMNS,
    )


def predict_recordings(
    paths: list[Path], predictor: Predictor, preprocess: Preprocess
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Score every recording: (windows, events, refused files with reasons, notes)."""
    windows, refused, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="vigil-predict-") as tmp:
        for path in paths:
            reason, note = check_recording(path, predictor.meta)
            if reason:
                refused.append({"path": str(path), "reason": reason})
                continue
            if note:
                notes.append(note)
            windows.append(score_recording(path, predictor, preprocess, Path(tmp)))
    table = pd.concat(windows, ignore_index=True) if windows else pd.DataFrame(columns=WINDOW_COLUMNS)
    threshold = float(predictor.meta["threshold"])
    events = [events_of(w, threshold) for w in windows]
    events_table = pd.concat(events, ignore_index=True) if events else pd.DataFrame(columns=EVENT_COLUMNS)
    return table, events_table, pd.DataFrame(refused, columns=["path", "reason"]), notes


def write_review_folder(paths: list[Path], root: Path, events: pd.DataFrame, out: Path) -> list[Path]:
    """A folder a reviewer corrects and ``vigil run eeg --data`` trains on: a link to each EDF (inputs stay
    read-only) and a BIDS ``<stem>_events.tsv`` of its detected seizures (``onset``, ``duration`` in seconds,
    ``trial_type`` ``sz``, ``probability``). A recording without events gets an empty sidecar (seizure-free
    until a reviewer adds one). The input's subfolders are kept, so patients stay apart."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    base = root if root.is_dir() else root.parent
    for path in paths:
        rel = path.relative_to(base.resolve()) if path.is_relative_to(base.resolve()) else Path(path.name)
        link = out / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
        mine = events[events["file"] == str(path)]
        sidecar = pd.DataFrame({"onset": mine["onset_s"], "duration": mine["duration_s"], "trial_type": "sz",
                                "probability": mine["probability"].round(4)})  # fmt: skip
        sidecar.to_csv(link.with_name(f"{link.stem}_events.tsv"), sep="\t", index=False)
        written.append(link)
    return written
