"""The EEG explain stage's pure part: which windows, attribution per channel, and the scalp-map decision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.registry import create_model
from tasks.config import EegExplainConfig
from tasks.explain.eeg import channel_importance, explain_eeg, pick_windows

SFREQ, N_TIMES = 64.0, 256


def _scored(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "window_id": [f"r1_{i}" for i in range(n)],
            "recording_id": "r1",
            "start_sample": np.arange(n) * N_TIMES,
            "start_s": np.arange(n) * N_TIMES / SFREQ,
            "end_s": (np.arange(n) + 1) * N_TIMES / SFREQ,
            "ictal": [0, 1, 1, 0, 1][:n],
            "seizure_id": "",
            "score": [0.9, 0.2, 0.7, 0.1, 0.95][:n],
        }
    )


def test_flagged_seizure_windows_are_explained_first_else_the_best_seizure_windows() -> None:
    chosen, which = pick_windows(_scored(5), threshold=0.5, n=3)
    assert chosen["window_id"].tolist() == ["r1_4", "r1_2"] and "flagged" in which  # not the false alarm r1_0
    chosen, which = pick_windows(_scored(5), threshold=0.99, n=1)
    assert chosen["window_id"].tolist() == ["r1_4"] and "no test seizure window reached" in which
    chosen, which = pick_windows(_scored(5).assign(ictal=0), threshold=0.5, n=2)
    assert chosen.empty and "no seizure window" in which


def test_channel_importance_is_each_channels_share() -> None:
    attr = np.zeros((2, 3, 4))
    attr[:, 0] = 1.0
    attr[:, 2] = -3.0  # the sign does not matter, the size does
    assert channel_importance(attr).tolist() == [0.25, 0.0, 0.75]
    assert channel_importance(np.zeros((1, 2, 4))).tolist() == [0.5, 0.5]


def _detector(folder: Path, channels: list[str]) -> Path:
    torch.manual_seed(0)
    kwargs = {"n_chans": len(channels), "n_times": N_TIMES, "n_outputs": 2, "sfreq": SFREQ, "drop_rate": 0.0}
    model = create_model("eeg_cnn_tiny", **kwargs)
    record = {"arch": "eeg_cnn_tiny", "kwargs": kwargs, "state_dict": model.state_dict(), "channels": channels}
    torch.save(record | {"sfreq": SFREQ, "window_s": N_TIMES / SFREQ, "normalize": "window"}, folder / "weights.pt")
    return folder / "weights.pt"


def test_a_single_channel_clip_is_explained_and_its_scalp_map_skipped_with_the_reason(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    rng = np.random.default_rng(0)
    np.save(signals / "r1.npy", (rng.normal(0, 20e-6, (1, 5 * N_TIMES))).astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    cfg = EegExplainConfig(max_windows=2, ig_steps=4, method="occlusion")
    result = explain_eeg(_detector(tmp_path, ["FP1-F7"]), _scored(5), 0.5, signals, cfg, out)
    assert result["n_windows"] == 2 and (out / "window_0.png").is_file() and (out / "window_1.png").is_file()
    assert result["channel_importance"] == {"FP1-F7": 1.0}
    assert "scalp map skipped: 1 of 1 channel(s)" in result["scalp_map_skipped"]
    assert not (out / "scalp.png").exists()
    assert json.loads((out / "explain.json").read_text())["scalp_map_skipped"] == result["scalp_map_skipped"]
