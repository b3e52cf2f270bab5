"""The EEG window classifier's data side: balanced training sets and the synthetic windows an arm adds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.cache import StageResult
from tasks.eeg_windows import ARRAY, MANIFEST
from tasks.window_classifier import balance, detection_synthetic


def test_balance_keeps_every_positive_and_a_seeded_share_of_negatives() -> None:
    windows = pd.DataFrame({"ictal": [1] * 5 + [0] * 100})
    out = balance(windows, "ictal", 4.0, seed=0)
    assert (out["ictal"] == 1).sum() == 5 and (out["ictal"] == 0).sum() == 20
    assert out.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(out, balance(windows, "ictal", 4.0, seed=0))
    assert not out.index.equals(balance(windows, "ictal", 4.0, seed=1).index)
    assert len(balance(windows.head(8), "ictal", 4.0, seed=0)) == 8  # fewer negatives than asked: all kept


def _record(stage: str, path: Path, **summary: object) -> StageResult:
    return StageResult(stage=stage, key=f"{stage}-key", path=str(path), cached=True, seconds=0.0, summary=summary)


def test_detection_synthetic_follows_the_synth_record(tmp_path: Path) -> None:
    (tmp_path / "synth").mkdir()
    (tmp_path / "label").mkdir()
    labels = np.array([0, 0, 1, 1, 1])
    np.save(tmp_path / "synth" / ARRAY, np.arange(5 * 2 * 8, dtype=np.float32).reshape(5, 2, 8))
    pd.DataFrame({"window_id": [f"s{i}" for i in range(5)], "label": labels}).to_csv(
        tmp_path / "synth" / MANIFEST, index=False
    )
    # 1 ictal and 3 interictal clean training windows: ictal is the minority
    pd.DataFrame(
        {"ictal": [1, 0, 0, 0, 1], "seizure_id": ["a", "", "", "", "b"], "split": ["train"] * 4 + ["test"]}
    ).to_csv(tmp_path / "label" / "windows.csv", index=False)
    label = _record("label", tmp_path / "label")

    synth = _record("synth", tmp_path / "synth", classes="minority", synthetic_weight=0.5)
    windows, key = detection_synthetic(synth, label)
    np.testing.assert_array_equal(windows.y, [1, 1, 1])
    assert windows.weight == 0.5 and key == {"key": "synth-key", "classes": "minority", "weight": 0.5}
    every, every_key = detection_synthetic(synth, label, all_rows=True)
    assert len(every) == 5 and every_key["classes"] == "all"

    plain = _record("synth", tmp_path / "synth", classes="all", synthetic_weight=1.0)
    windows, key = detection_synthetic(plain, label)
    assert len(windows) == 5 and windows.weight is None and key["weight"] == 1.0
