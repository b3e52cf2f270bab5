"""The EEG GAN learns from the train recordings only: no validation or test window ever reaches it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.config import EegSynthConfig
from tasks.synth.eeg import synthesize_eeg

SFREQ, WIN = 64.0, 128  # 2-s windows


def _windows(split_of: dict[str, str]) -> pd.DataFrame:
    """Ten 2-s windows per recording; windows 3-4 ictal (seizure s_<rec>), window 5 grazes its end."""
    rows = []
    for rec, split in split_of.items():
        for k in range(10):
            ictal = int(k in (3, 4))
            sid = f"s_{rec}" if k in (3, 4, 5) else ""
            rows.append({"window_id": f"{rec}:{k * WIN}", "recording_id": rec, "patient": "p", "start_sample": k * WIN,
                         "start_s": k * 2.0, "end_s": k * 2.0 + 2.0, "ictal": ictal, "seizure_id": sid,
                         "split": split})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_eeg_gan_never_reads_a_validation_or_test_window(tmp_path) -> None:
    """Only the train recordings have signal files: reading any validation or test window would raise, and the
    GAN's count of training windows must be exactly the clean train windows (README: "a test checks")."""
    split_of = {"r0": "train", "r1": "train", "r2": "val", "r3": "test"}
    signals = tmp_path / "signals"
    signals.mkdir()
    rng = np.random.default_rng(0)
    for rec, split in split_of.items():
        if split == "train":
            np.save(signals / f"{rec}.npy", rng.normal(size=(2, 10 * WIN)).astype(np.float32))
    cfg = EegSynthConfig(model="gan_eeg_tiny", steps=2, batch_size=4, ratio=1.0, device="cpu", amp_cpu=False)
    out = tmp_path / "out"
    out.mkdir()
    summary = synthesize_eeg(_windows(split_of), signals, WIN, SFREQ, cfg, "window", 0, out, None)
    # 2 train recordings x (2 ictal + 7 clean interictal windows); the grazing window 5 is not clean
    assert summary["gan_train_windows"] == 18
    assert summary["gan_train_by_class"] == {"interictal": 14, "ictal": 4}
