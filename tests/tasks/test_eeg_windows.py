"""The EEG window dataset: the right slice of the memory-mapped signal, normalised as asked."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.eeg_windows import WindowDataset


# --------------------------------------------------------------------------------------------- dataset
def _signal_folder(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    (root / "signals").mkdir(parents=True)
    arrays = {
        "p1_r1": rng.normal(0, 50, (2, 64)).astype(np.float32),
        "p1_r2": (np.arange(4 * 40, dtype=np.float32).reshape(4, 40) * 3.0),
    }
    for rid, arr in arrays.items():
        np.save(root / "signals" / f"{rid}.npy", arr)
    return arrays


def test_window_dataset_reads_the_right_slice(tmp_path: Path) -> None:
    arrays = _signal_folder(tmp_path, np.random.default_rng(0))
    windows = pd.DataFrame(
        {"recording_id": ["p1_r1", "p1_r2", "p1_r1"], "start_sample": [8, 4, 48], "ictal": [0, 1, 1], "w": [1, 2, 3]}
    )
    ds = WindowDataset(windows, tmp_path / "signals", 16, normalize="none", weight_column="w")
    assert len(ds) == 3
    x, y, wt = ds[1]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and tuple(x.shape) == (4, 16)
    np.testing.assert_array_equal(x.numpy(), arrays["p1_r2"][:, 4:20])
    assert int(y) == 1 and float(wt) == 2.0
    np.testing.assert_array_equal(ds[2][0].numpy(), arrays["p1_r1"][:, 48:64])
    assert isinstance(ds._arrays["p1_r1"], np.memmap)
    cached = ds._arrays["p1_r1"]
    ds[0]
    assert ds._arrays["p1_r1"] is cached  # opened once
    assert pickle.loads(pickle.dumps(ds))._arrays == {}  # workers reopen their own memmaps

    norm = WindowDataset(windows, tmp_path / "signals", 16, normalize="window", channels=[1, 3])
    xn, yn = norm[1]
    raw = arrays["p1_r2"][[1, 3], 4:20]
    q25, med, q75 = np.percentile(raw, [25, 50, 75], axis=1, keepdims=True)
    np.testing.assert_allclose(xn.numpy(), (raw - med) / ((q75 - q25) / 1.349), rtol=1e-5)
    rec_norm = WindowDataset(windows, tmp_path / "signals", 16, normalize="recording", clip=2.0)
    assert float(rec_norm[1][0].abs().max()) <= 2.0

    bad = WindowDataset(windows.assign(start_sample=[60, 0, 0]), tmp_path / "signals", 16, normalize="none")
    with pytest.raises(IndexError, match="array has 64 samples"):
        bad[0]


def test_causal_normalisation_never_looks_ahead(tmp_path: Path) -> None:
    """Prediction's default: a window is scaled by the minutes before it only. A recording whose amplitude jumps
    tenfold at 10 min (a seizure's, say) changes "recording" statistics of its first windows, never "causal" ones."""
    sfreq, n = 16.0, 16 * 1200  # 20 min at 16 Hz
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, n)).astype(np.float32)
    (tmp_path / "signals").mkdir()
    np.save(tmp_path / "signals" / "r.npy", x)
    jumped = x.copy()
    jumped[:, n // 2 :] *= 10.0
    np.save(tmp_path / "signals" / "j.npy", jumped)
    starts = np.array([0, 16 * 300, 16 * 590])  # the first window, 5 min in, just before the jump
    frame = lambda rec: pd.DataFrame({"recording_id": rec, "start_sample": starts, "ictal": 0})  # noqa: E731
    for norm, same in (("causal", True), ("recording", False)):
        a = WindowDataset(frame("r"), tmp_path / "signals", 64, normalize=norm, sfreq=sfreq)
        b = WindowDataset(frame("j"), tmp_path / "signals", 64, normalize=norm, sfreq=sfreq)
        equal = [torch.allclose(a[i][0], b[i][0]) for i in range(3)]
        assert all(equal) if same else not any(equal)
    # the first window has no history: its own statistics; later windows: the history's, not their own
    causal = WindowDataset(frame("r"), tmp_path / "signals", 64, normalize="causal", sfreq=sfreq)
    own = WindowDataset(frame("r"), tmp_path / "signals", 64, normalize="window")
    assert torch.allclose(causal[0][0], own[0][0]) and not torch.allclose(causal[1][0], own[1][0])
    with pytest.raises(ValueError, match="sfreq"):
        WindowDataset(frame("r"), tmp_path / "signals", 64, normalize="causal")
