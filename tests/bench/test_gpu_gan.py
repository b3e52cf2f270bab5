"""The prepared GPU script for issue 5 runs end to end on CPU (smoke settings), so a GPU session only runs it."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gpu_gan import main


def test_gpu_gan_smoke_writes_both_arms_and_tstr(tmp_path: Path) -> None:
    out = main(["--smoke", "--device", "cpu", "--out", str(tmp_path / "gan.json")])
    saved = json.loads((tmp_path / "gan.json").read_text())
    assert saved["gain_mean"] == out["gain_mean"]
    assert len(saved["arms"]["real_only"]) == len(saved["arms"]["real_plus_synthetic"]) == 2
    n_real = saved["arms"]["real_only"][0]["n_train"]
    assert saved["arms"]["real_plus_synthetic"][0]["n_train"] == n_real + saved["n_synthetic"]
    assert 0.0 <= saved["tstr"]["test"]["balanced_accuracy"] <= 1.0
    assert saved["gan"]["steps_per_s"] > 0
