"""Tiny vigil model records (what ``model.pt`` holds) shared by the compress and predict tests."""

from __future__ import annotations

import torch

import models  # noqa: F401  (registers the architectures)
from models.registry import create_model


def image_record(size: int = 32, chans: int = 1, seed: int = 0) -> dict:
    """A vigil image model record as the report writes model.pt: tiny ResNet, threshold and preprocessing."""
    torch.manual_seed(seed)
    kwargs = {"in_chans": chans, "num_classes": 2}
    model = create_model("resnet_tiny", **kwargs).eval()
    return {
        "arch": "resnet_tiny",
        "kwargs": kwargs,
        "state_dict": model.state_dict(),
        "class_names": ["good", "crack"],
        "in_chans": chans,
        "image_size": size,
        "normalization": {"mean": [0.5] * chans, "std": [0.25] * chans},
        "geometry": "pad",
        "threshold": 0.4,
    }


def eeg_record(channels: tuple[str, ...] = ("C3", "C4"), sfreq: float = 64.0, window_s: float = 2.0) -> dict:
    """A vigil detection model record as the report writes ``detection/model.pt``."""
    torch.manual_seed(0)
    n_times = int(sfreq * window_s)
    kwargs = {"n_chans": len(channels), "n_times": n_times, "n_outputs": 2, "sfreq": sfreq}
    model = create_model("eeg_cnn_tiny", **kwargs).eval()
    return {
        "arch": "eeg_cnn_tiny",
        "kwargs": kwargs,
        "state_dict": model.state_dict(),
        "task": "detection",
        "channels": list(channels),
        "sfreq": sfreq,
        "window_s": window_s,
        "normalize": "window",
        "threshold": 0.5,
    }


def write_edf(path, signals: dict, sfreq: float):
    """An EDF+ file with signals in microvolts (+-3 mV range), one-second data records (edfio)."""
    import edfio
    import numpy as np

    sigs = [
        edfio.EdfSignal(np.asarray(x, dtype=float), sfreq, label=name, physical_dimension="uV",
                        physical_range=(-3000.0, 3000.0))
        for name, x in signals.items()
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    edfio.Edf(sigs, data_record_duration=1.0).write(path)
    return path
