"""The self-describing ONNX file: export with a softmax head, metadata round trip, refusal of bad metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from model_records import image_record

import models  # noqa: F401
from models.registry import create_model
from tasks.onnx_model import (
    OnnxMetadataError,
    export_onnx,
    model_metadata,
    open_session,
    read_metadata,
    run_session,
    write_metadata,
)


def test_export_keeps_probabilities_and_metadata(tmp_path: Path) -> None:
    record = image_record()
    model = create_model("resnet_tiny", **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    meta = model_metadata(record, "image", preprocessing_extra={"geometry": "pad"})
    path = export_onnx(model.eval(), meta, tmp_path / "model.onnx")
    session, read = open_session(path, threads=1)
    assert read["threshold"] == 0.4 and read["class_names"] == ["good", "crack"]
    assert read["preprocessing"]["mean"] == [0.5] and read["input_shape"] == ["batch", 1, 32, 32]
    x = np.random.default_rng(0).normal(size=(5, 1, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    got = run_session(session, x, batch_size=2)  # dynamic batch axis: batches of 2 and 1
    assert np.abs(got - expected).max() <= 1e-5


def test_missing_or_inconsistent_metadata_is_refused_naming_the_problem(tmp_path: Path) -> None:
    record = image_record()
    model = create_model("resnet_tiny", **record["kwargs"]).eval()
    meta = model_metadata(record, "image")
    path = export_onnx(model, meta, tmp_path / "model.onnx")
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(OnnxMetadataError, match="no 'vigil' metadata"):
        read_metadata(tmp_path / "bare.onnx")
    write_metadata(path, {k: v for k, v in meta.items() if k != "threshold"})
    with pytest.raises(OnnxMetadataError, match="missing 'threshold'"):
        open_session(path)
    write_metadata(path, meta | {"input_shape": ["batch", 3, 32, 32]})  # another model's shape
    with pytest.raises(OnnxMetadataError, match=r"input shape .* does not match"):
        open_session(path)
    broken = json.loads(json.dumps(meta))
    del broken["preprocessing"]["std"]
    write_metadata(path, broken)
    with pytest.raises(OnnxMetadataError, match="preprocessing.std"):
        open_session(path)
