"""vigil predict on images: the model file chosen, preprocessing from the metadata, refusals, the review manifest."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from model_records import image_record

from models.registry import create_model
from tasks.onnx_model import export_onnx, model_metadata
from tasks.predict.batch import predict_defect
from tasks.predict.images import review_manifest
from tasks.predict.model import PredictInputError


def _run_dir(root: Path, onnx: bool = True) -> Path:
    root.mkdir(parents=True)
    record = image_record()
    torch.save(record, root / "model.pt")
    if onnx:
        model = create_model("resnet_tiny", **record["kwargs"])
        model.load_state_dict(record["state_dict"])
        meta = model_metadata(record, "image", preprocessing_extra={"geometry": "pad"})
        export_onnx(model.eval(), meta, root / "model.onnx")
    return root


def _images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    (folder / "a").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(folder / "a" / f"g{i}.png"), rng.integers(0, 255, (40 + 8 * i, 40), dtype=np.uint8))
    colour = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "colour.png"), colour)
    return folder


def test_onnx_and_model_pt_score_alike_and_a_colour_image_is_refused_for_a_grey_model(tmp_path: Path) -> None:
    images = _images(tmp_path / "new")
    with_onnx = predict_defect(images, _run_dir(tmp_path / "run"), tmp_path / "out" / "p.csv")
    only_pt = predict_defect(images, _run_dir(tmp_path / "run_pt", onnx=False), tmp_path / "out" / "q.csv")
    a, b = pd.read_csv(with_onnx.csv), pd.read_csv(only_pt.csv)
    assert list(a.columns[:4]) == ["path", "probability", "label", "threshold"] and len(a) == 4
    assert np.abs(a["probability"] - b["probability"]).max() <= 1e-4
    assert (a["threshold"] == 0.4).all() and set(a["label"]) <= {"good", "crack"}
    assert with_onnx.n_refused == 1
    report = (tmp_path / "out" / "p.report.md").read_text()
    assert "model.onnx" in report and "colour.png: a colour image; the model expects 1-channel grey" in report
    with pytest.raises(PredictInputError, match="no int8 model"):
        predict_defect(images, tmp_path / "run", tmp_path / "x.csv", int8=True)
    with pytest.raises(PredictInputError, match="no such run directory"):
        predict_defect(images, tmp_path / "nowhere", tmp_path / "x.csv")


def test_review_manifest_is_sorted_by_uncertainty_with_paths_relative_to_it(tmp_path: Path) -> None:
    predictions = pd.DataFrame(
        {"path": [str(tmp_path / f"i{k}.png") for k in range(4)], "probability": [0.9, 0.45, 0.1, 0.6],
         "label": ["crack", "crack", "good", "crack"], "threshold": 0.4}
    )  # fmt: skip
    manifest = review_manifest(predictions, tmp_path / "review")
    assert list(manifest.columns) == ["path", "label", "probability", "needs_review"]
    assert list(manifest["path"]) == ["../i1.png", "../i3.png", "../i2.png", "../i0.png"]
    assert list(manifest["needs_review"]) == ["true", "true", "false", "false"]
