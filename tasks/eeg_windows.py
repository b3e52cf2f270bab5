"""EEG windows as every stage after labelling sees them: the windows table, its labels, and lazy datasets.

The label stage writes ``windows.csv`` (one row per window, with its split or fold); training, evaluation, the
synthetic-data stage and the report read it back with :func:`read_windows` and draw samples through
:class:`WindowDataset`, which reads one window at a time from the ingest stage's memory-mapped signals, so memory does
not grow with recording length. Synthetic windows (the synth stage's one array plus manifest) enter training
through :class:`ArrayWindows` with the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from tasks.synthetic_samples import classes_to_add

WINDOW_COLUMNS = ["window_id", "recording_id", "patient", "start_sample", "start_s", "end_s", "ictal", "seizure_id"]


PREDICTION_COLUMNS = ["timeline", "t_start_s", "t_end_s", "pred_label", "lead_seizure_id"]


#: ``pred_label`` values.
PREICTAL, INTERICTAL, EXCLUDED = 1, 0, -1


#: ``fold`` values besides the test fold numbers 0, 1, ...: used for training in every fold but tested in none
#: (interictal windows of a patient without a usable leading seizure), and not used at all (excluded labels and the
#: windows dropped at block boundaries).
FOLD_TRAIN_ONLY, FOLD_UNUSED = -1, -2


SPLITS = ("train", "val", "test")


def fold_masks(windows: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) row masks of one fold from :func:`tasks.label.splits.prediction_folds`.

    Args:
        windows: Output of :func:`tasks.label.splits.prediction_folds`.
        fold: The fold number (>= 0).

    Returns:
        ``train``: every used window outside fold ``fold``; ``test``: the windows of fold ``fold``.
    """
    f = windows["fold"].to_numpy()
    return (f != fold) & (f != FOLD_UNUSED), f == fold


# --------------------------------------------------------------------------------------------- dataset
Normalisation = Literal["none", "window", "recording", "causal"]

#: ``"causal"`` normalisation: seconds of signal before a window whose statistics scale it, and the step (seconds)
#: at which those statistics are refreshed (windows in one step share them, which keeps the cost per window low).
CAUSAL_HISTORY_S, CAUSAL_REFRESH_S = 600.0, 60.0


class WindowDataset(Dataset):
    """EEG windows read lazily from memory-mapped ``signals/<recording_id>.npy`` arrays.

    Only the requested window is read from disk, so hours of EEG never have to fit in memory; the open memmaps are
    cached per recording (and dropped when the dataset is pickled into DataLoader workers, which reopen their own).

    Normalisation, per channel, with the robust location/scale ``median`` and ``IQR / 1.349`` (the standard
    deviation for Gaussian data, but not thrown off by blinks or electrode pops):

    * ``"window"``: statistics of the window itself. Removes amplitude differences between patients and
      montages, but also the window's absolute amplitude, which is a seizure cue.
    * ``"recording"``: statistics of the whole recording (estimated once from 32 evenly spaced windows and
      cached), so amplitude changes within a recording survive. They include the recording's future, its seizure
      too: fine for detection on whole recordings, a leak for prediction.
    * ``"causal"``: statistics of the ``CAUSAL_HISTORY_S`` (10 min) of signal before the window only (16 evenly
      spaced window-long pieces, refreshed every ``CAUSAL_REFRESH_S``); a window with less than one window of
      history before its refresh point uses its own statistics. What a device running online could compute.
    * ``"none"``: raw values times ``scale`` (e.g. ``1e-2`` to put microvolts near unit range).

    Args:
        windows: Rows with ``recording_id`` and ``start_sample`` (e.g. from
            :func:`tasks.label.windows.make_windows`), plus the label and optional weight columns.
        signals_dir: Folder holding ``<recording_id>.npy`` (``(n_chans, n_samples)`` float32).
        window_samples: Samples per window (``round(window_s * sfreq)``).
        label_column: Integer label column (``"ictal"`` for detection, ``"pred_label"`` for prediction).
        weight_column: Optional per-window weight column; when given, items are ``(x, y, w)``.
        normalize: ``"window"`` (default), ``"recording"`` or ``"none"``.
        channels: Channel indices to keep (default all).
        clip: Clip normalised values to ``[-clip, clip]`` (tames artefacts); ``None`` keeps them.
        scale: Factor applied after normalisation.
        sfreq: Sampling rate in Hz; needed by ``"causal"`` (its history is in seconds).

    Items are ``x`` float32 ``(n_chans, window_samples)``, ``y`` int64 scalar and, with ``weight_column``, ``w``
    float32 scalar, the batch layout of :func:`models.training.fit`.
    """

    def __init__(
        self,
        windows: pd.DataFrame,
        signals_dir: str | Path,
        window_samples: int,
        *,
        label_column: str = "ictal",
        weight_column: str | None = None,
        normalize: Normalisation = "window",
        channels: Sequence[int] | None = None,
        clip: float | None = None,
        scale: float = 1.0,
        sfreq: float | None = None,
    ) -> None:
        if normalize not in ("none", "window", "recording", "causal"):
            raise ValueError(f"normalize={normalize!r}; use 'window', 'recording', 'causal' or 'none'")
        if normalize == "causal" and not (sfreq and sfreq > 0):
            raise ValueError(f"normalize='causal' needs the sampling rate (sfreq={sfreq}) to size its history")
        if window_samples < 1:
            raise ValueError(f"window_samples={window_samples}: must be >= 1")
        require_columns(windows, ["recording_id", "start_sample", label_column], "windows")
        if weight_column is not None:
            require_columns(windows, [weight_column], "windows")
        self.signals_dir = Path(signals_dir)
        self.window_samples = int(window_samples)
        self.recording_ids = windows["recording_id"].astype(str).to_numpy()
        self.starts = windows["start_sample"].to_numpy(dtype=np.int64)
        self.labels = windows[label_column].to_numpy(dtype=np.int64)
        self.weights = None if weight_column is None else windows[weight_column].to_numpy(dtype=np.float32)
        self.normalize = normalize
        self.channels = None if channels is None else np.asarray(channels, dtype=np.int64)
        self.clip = clip
        self.scale = float(scale)
        self.sfreq = sfreq
        self._arrays: dict[str, np.ndarray] = {}
        self._stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # memmaps do not travel to worker processes; each reopens its own
        return state

    def _array(self, recording_id: str) -> np.ndarray:
        arr = self._arrays.get(recording_id)
        if arr is None:
            path = self.signals_dir / f"{recording_id}.npy"
            if not path.exists():
                raise FileNotFoundError(f"{path}: no signal array for recording {recording_id!r}; rerun ingest")
            arr = np.load(path, mmap_mode="r")
            if arr.ndim != 2:
                raise ValueError(f"{path}: expected (n_chans, n_samples), got shape {arr.shape}")
            self._arrays[recording_id] = arr
        return arr

    def _read(self, arr: np.ndarray, start: int) -> np.ndarray:
        piece = arr[:, start : start + self.window_samples]  # slice time first: only this window is read
        if self.channels is not None:
            piece = piece[self.channels]
        return np.array(piece, dtype=np.float32)  # (C, T), a copy

    @staticmethod
    def _robust(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q25, med, q75 = np.percentile(x, [25, 50, 75], axis=-1, keepdims=True)
        return med.astype(np.float32), np.maximum((q75 - q25) / 1.349, 1e-6).astype(np.float32)

    def _recording_stats(self, recording_id: str, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stats = self._stats.get(recording_id)
        if stats is None:
            last = max(arr.shape[1] - self.window_samples, 0)
            starts = np.unique(np.linspace(0, last, 32).astype(np.int64))
            sample = np.concatenate([self._read(arr, int(s)) for s in starts], axis=1)
            stats = self._stats[recording_id] = self._robust(sample)
        return stats

    def _causal_stats(self, recording_id: str, arr: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Statistics of the history before ``start`` (refreshed every ``CAUSAL_REFRESH_S``), or ``None`` when
        there is less than one window of it."""
        refresh = max(int(round(CAUSAL_REFRESH_S * float(self.sfreq))), 1)
        end = start // refresh * refresh  # the last refresh point at or before the window's start
        if end < self.window_samples:
            return None
        key = f"{recording_id}@{end}"
        stats = self._stats.get(key)
        if stats is None:
            lo = max(0, end - int(round(CAUSAL_HISTORY_S * float(self.sfreq))))
            starts = np.unique(np.linspace(lo, end - self.window_samples, 16).astype(np.int64))
            sample = np.concatenate([self._read(arr, int(s)) for s in starts], axis=1)
            stats = self._stats[key] = self._robust(sample)
        return stats

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        rec, start = self.recording_ids[i], int(self.starts[i])
        arr = self._array(rec)
        x = self._read(arr, start)
        if x.shape[1] != self.window_samples:
            raise IndexError(
                f"window {i} of {rec!r} starts at sample {start} but the array has {arr.shape[1]} samples; "
                "the windows were cut for a longer recording (check duration_s and sfreq)"
            )
        if self.normalize == "window":
            med, scl = self._robust(x)
            x = (x - med) / scl
        elif self.normalize == "recording":
            med, scl = self._recording_stats(rec, arr)
            x = (x - med) / scl
        elif self.normalize == "causal":
            med, scl = self._causal_stats(rec, arr, start) or self._robust(x)
            x = (x - med) / scl
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        if self.clip is not None:
            np.clip(x, -self.clip, self.clip, out=x)
        y = torch.tensor(self.labels[i], dtype=torch.int64)
        if self.weights is None:
            return torch.from_numpy(x), y
        return torch.from_numpy(x), y, torch.tensor(self.weights[i], dtype=torch.float32)


def read_windows(label_dir: Path) -> pd.DataFrame:
    """The label stage's ``windows.csv`` with ids kept as strings (a recording id like ``001`` must stay ``001``)."""
    return pd.read_csv(
        label_dir / "windows.csv",
        dtype={"recording_id": str, "patient": str, "seizure_id": str},
        keep_default_na=False,
    )


MANIFEST = "manifest.csv"


ARRAY = "windows.npy"


def detection_training_windows(windows: pd.DataFrame) -> pd.DataFrame:
    """The windows a detection GAN may learn from: clean windows of the train recordings (the one place of the rule)."""
    clean = (windows["ictal"] == 1) | (windows["seizure_id"].astype(str) == "")
    return windows[clean & (windows["split"] == "train")]


def load_windows(
    frame: pd.DataFrame, signals_dir: Path, n_samples: int, normalize: str, sfreq: float | None = None
) -> np.ndarray:
    """Windows as ``(N, C, T)`` float32 in the classifier's normalisation (``"causal"`` needs ``sfreq``)."""
    data = WindowDataset(frame, signals_dir, n_samples, label_column="ictal", normalize=normalize, sfreq=sfreq)
    return np.stack([data[i][0].numpy() for i in range(len(data))]) if len(data) else np.zeros((0, 0, n_samples))


class ArrayWindows(Dataset):
    """Synthetic windows held in one array, with the ``(x, y)`` / ``(x, y, w)`` items of ``WindowDataset``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weight: float | None = None) -> None:
        self.x = x
        self.y = np.asarray(y, dtype=np.int64)
        self.weight = weight

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x = torch.from_numpy(np.array(self.x[i], dtype=np.float32))
        y = torch.tensor(self.y[i], dtype=torch.int64)
        if self.weight is None:
            return x, y
        return x, y, torch.tensor(self.weight, dtype=torch.float32)


def read_synthetic(synth_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """The synth stage's windows (memory-mapped) and manifest."""
    return np.load(synth_dir / ARRAY, mmap_mode="r"), pd.read_csv(synth_dir / MANIFEST, dtype={"window_id": str})


def synthetic_selection(manifest: pd.DataFrame, classes: str, windows: pd.DataFrame) -> np.ndarray:
    """Manifest row indices the real + synthetic arm adds (``classes`` of :func:`classes_to_add`, counted over the
    detection training windows of the label stage's ``windows``)."""
    keep = classes_to_add(detection_training_windows(windows)["ictal"].to_numpy(), classes)
    return np.flatnonzero(manifest["label"].astype(int).isin(keep).to_numpy())


# --------------------------------------------------------------------------------------------- validation
def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a ``ValueError`` naming the columns ``what`` (a file or table) lacks, and the ones it has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")
