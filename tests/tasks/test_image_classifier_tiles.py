"""geometry=tile through training, the probes, compress's inputs and predict: tiles in, one score per image out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import part_image, split_table

import tasks.image_classifier as classifier
from tasks.compress.images import compress_data, image_metadata
from tasks.config import AugmentConfig, CompressConfig, TrainConfig
from tasks.image_augmentation import build_pipeline
from tasks.image_features import _cv_folds
from tasks.image_io import load_views
from tasks.onnx_model import export_onnx, read_metadata
from tasks.predict.batch import predict_defect

TILE = 32


def wide_part(rng: np.random.Generator, defect: bool, n_squares: int = 4) -> np.ndarray:
    """A ``TILE`` x ``n_squares * TILE`` strip; a defective one has a crack in one square only (a weak label)."""
    cracked = int(rng.integers(n_squares)) if defect else -1
    return np.hstack([part_image(rng, TILE, defect=i == cracked) for i in range(n_squares)])


def _table(root: Path, n_per_class: int = 8) -> pd.DataFrame:
    """Real wide PNGs (:func:`wide_part`) in a split table."""
    return split_table(root, lambda rng, defect: wide_part(rng, defect=defect), n_per_class)


def _cfg(**kw) -> TrainConfig:
    base = {"model": "resnet_tiny", "image_size": 32, "epochs": 1, "batch_size": 8, "patience": None}
    return TrainConfig(**(base | {"geometry": "tile", "tile_px": TILE, "amp_cpu": False, "threads": 1} | kw))


def _tile_probabilities(weights: Path, path: str) -> np.ndarray:
    """The model's probabilities of each tile of one file, computed here independently of the scorers."""
    model, meta = classifier.load_model(weights)
    norm = meta["normalization"]
    tiles = (load_views(path, 32, 1, "tile", meta["tile_px"]) - np.asarray(norm["mean"])) / np.asarray(norm["std"])
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2), dtype=np.float32))
        return torch.softmax(model(x), dim=1).numpy()


def test_each_tile_is_a_sample_of_its_images_split_label_and_weight(tmp_path: Path) -> None:
    table = _table(tmp_path)
    table.loc[0, "weight"] = 0.25
    data = classifier._decode_splits(table, 32, tmp_path / "images.npy", "tile", TILE)
    assert data.array.shape == (4 * len(table), 32, 32, 1)
    assert len(data.idx["train"]) == 4 * 8 and np.array_equal(data.counts, [4] * len(table))
    assert np.array_equal(data.labels, np.repeat(table["label"], 4)) and (data.weights[:4] == 0.25).all()
    owners = {part: set(data.owner[i]) for part, i in data.idx.items()}
    assert not (owners["train"] & owners["val"]) and not (owners["train"] & owners["test"])  # splits per image
    assert owners["test"] == set(np.flatnonzero(table["split"] == "test"))


def test_pad_keeps_one_array_row_per_image(tmp_path: Path) -> None:
    table = _table(tmp_path, n_per_class=4)
    data = classifier._decode_splits(table, 32, tmp_path / "images.npy", "pad")
    assert data.array.shape == (len(table), 32, 32, 1) and np.array_equal(data.owner, np.arange(len(table)))
    assert all(np.array_equal(data.idx[p], data.image_idx[p]) for p in ("train", "val", "test"))


def test_a_tiled_model_trains_on_tiles_and_scores_each_image_as_its_most_defective_tile(tmp_path: Path) -> None:
    table = _table(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = classifier.train_classifier(
        table, ["good", "crack"], _cfg(), build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    predictions = pd.read_csv(result.predictions_path)
    assert len(predictions) == 8 and predictions["sample_id"].is_unique  # one row per val/test image, not per tile
    assert not (out / "images.npy").exists()
    meta = torch.load(result.weights_path, map_location="cpu", weights_only=True)
    assert (meta["geometry"], meta["tile_px"]) == ("tile", TILE) and "tile_grid" in meta["preprocess"]
    row = predictions.iloc[-1]
    tiles = _tile_probabilities(result.weights_path, table.set_index("sample_id").at[row["sample_id"], "path"])
    assert row["prob_1"] == pytest.approx(tiles[:, 1].max(), abs=1e-5)
    feats = classifier.embed_images(result.weights_path, table["path"].tolist()[:3], batch_size=2)
    assert feats.shape[0] == 3 and feats.ndim == 2 and np.isfinite(feats).all()


def test_probe_folds_keep_an_images_tiles_together() -> None:
    labels = np.repeat([0, 0, 0, 1, 1, 1], 4)
    groups = np.repeat(np.arange(6), 4)
    for train, held in _cv_folds(labels, groups, 3, "linear probe", 0).split(np.zeros(24), labels, groups):
        assert not set(groups[train]) & set(groups[held])


@pytest.mark.parametrize("probe", ["linear", "svm"])
def test_a_probe_fits_on_tile_features(tmp_path: Path, probe: str) -> None:
    table = _table(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    cfg = _cfg(model=f"efficientnet_lite0+{probe}", pretrained=True)
    result = classifier.train_classifier(
        table, ["good", "crack"], cfg, build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    assert f"{probe}_cv_balanced_accuracy" in result.history[0]
    predictions = pd.read_csv(result.predictions_path)
    assert len(predictions) == 8 and np.allclose(predictions[["prob_0", "prob_1"]].sum(axis=1), 1.0, atol=1e-5)


@pytest.fixture()
def tiled_run(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A run folder with a tiled model's model.pt and model.onnx, as the report and compress stages write them."""
    (tmp_path / "data").mkdir()
    table = _table(tmp_path / "data")
    out = tmp_path / "train"
    out.mkdir()
    result = classifier.train_classifier(
        table, ["good", "crack"], _cfg(), build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    run = tmp_path / "run"
    run.mkdir()
    record = torch.load(result.weights_path, map_location="cpu", weights_only=True) | {"threshold": 0.5}
    torch.save(record, run / "model.pt")
    model, _ = classifier.load_model(run / "model.pt")
    export_onnx(model, image_metadata(record, 0.5), run / "model.onnx")
    return run, table


def test_predict_scores_a_wide_image_to_one_row_with_onnx_and_torch_alike(tiled_run, tmp_path: Path) -> None:
    run, _ = tiled_run
    pre = read_metadata(run / "model.onnx")["preprocessing"]
    assert (pre["geometry"], pre["tile_px"]) == ("tile", TILE)
    new = tmp_path / "new"
    new.mkdir()
    cv2.imwrite(str(new / "strip.png"), wide_part(np.random.default_rng(5), defect=True, n_squares=6))
    cv2.imwrite(str(new / "huge.png"), np.full((TILE, 70 * TILE), 128, dtype=np.uint8))  # 70 tiles: refused
    onnx = pd.read_csv(predict_defect(new, run, tmp_path / "a.csv").csv)
    (run / "model.onnx").unlink()
    result = predict_defect(new, run, tmp_path / "b.csv")
    torch_rows = pd.read_csv(result.csv)
    assert len(onnx) == len(torch_rows) == 1 and result.n_refused == 1
    assert "limit of 64 per image" in (tmp_path / "b.report.md").read_text()
    tiles = _tile_probabilities(run / "model.pt", str(new / "strip.png"))
    assert torch_rows.at[0, "probability"] == pytest.approx(tiles[:, 1].max(), abs=1e-5)
    assert abs(onnx.at[0, "probability"] - torch_rows.at[0, "probability"]) <= 1e-4


def test_compress_scores_tiles_per_test_image(tiled_run) -> None:
    run, table = tiled_run
    record = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    data = compress_data(table, image_metadata(record, 0.5), CompressConfig(calibration_samples=3), 0)
    n_test = int((table["split"] == "test").sum())
    assert data.x_test.shape == (4 * n_test, 1, 32, 32) and len(data.y_test) == n_test
    assert len(data.y_train) == len(data.x_train) == 4 * 3
    proba = np.random.default_rng(0).dirichlet([1, 1], size=len(data.x_test))
    assert data.test_probabilities(proba).shape == (n_test, 2)
