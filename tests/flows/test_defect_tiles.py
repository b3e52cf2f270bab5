"""train.geometry=tile end to end: the defect flow on the test profile with wide images, then `vigil predict`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import part_image

from flows.cli import main
from flows.config import resolve_config
from flows.defect_detection import defect_detection
from tasks.onnx_model import read_metadata

TILE = 32


def wide_part(rng: np.random.Generator, defect: bool, n_squares: int = 4) -> np.ndarray:
    """A 32 x (32 * n_squares) px strip; a defective one has a crack in one square only."""
    cracked = int(rng.integers(n_squares)) if defect else -1
    return np.hstack([part_image(rng, TILE, defect=i == cracked) for i in range(n_squares)])


def write_wide_folder(root: Path, n_per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for label, name in enumerate(("good", "crack")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            cv2.imwrite(str(root / name / f"{name}_{i:03d}.png"), wide_part(rng, defect=label == 1))
    return root


def test_tiled_defect_run_scores_one_row_per_image_and_predict_scores_a_wide_image(
    prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = write_wide_folder(tmp_path / "strips", n_per_class=12)
    data_root = tmp_path / "vd"
    monkeypatch.setenv("VIGIL_DATA", str(data_root))
    sets = [f"ingest.path={root}", "train.geometry=tile", f"train.tile_px={TILE}", "evaluate.baseline=false"]
    state = defect_detection(config=resolve_config("defect", profile="test", sets=sets), return_state=True)
    assert state.is_completed(), state.message
    run_dir = Path(state.result())

    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_images = metrics["n"]["train"] + metrics["n"]["val"] + metrics["n"]["test"]
    assert n_images == 24 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    (predictions_csv,) = (data_root / "cache" / "train").glob("*/predictions.csv")
    predictions = pd.read_csv(predictions_csv)
    assert len(predictions) == metrics["n"]["val"] + metrics["n"]["test"] and predictions["sample_id"].is_unique
    record = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    assert (record["geometry"], record["tile_px"]) == ("tile", TILE)
    pre = read_metadata(run_dir / "model.onnx")["preprocessing"]
    assert (pre["geometry"], pre["tile_px"]) == ("tile", TILE)
    assert set(metrics["compress"]) >= {"fp32_torch", "fp32_onnx", "int8_onnx"}
    assert metrics["explain"]["n_images"] == metrics["n"]["test"]  # explained: each test image's decisive tile
    assert "alt='overlays'" in (run_dir / "report.html").read_text()

    new = tmp_path / "new.png"
    cv2.imwrite(str(new), wide_part(np.random.default_rng(9), defect=True, n_squares=8))  # 8 tiles
    out = tmp_path / "scored.csv"
    capsys.readouterr()
    assert main(["predict", "defect", str(new), "--run", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    scored = pd.read_csv(out)
    assert len(scored) == 1 and scored.at[0, "path"] == str(new.resolve())
    assert 0.0 <= scored.at[0, "probability"] <= 1.0 and scored.at[0, "label"] in ("good", "crack")
