"""The compress stage's core on a tiny image model: files, every variant's keys, parity, int8 and pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from model_records import image_record

from models.registry import create_model
from tasks.compress.variants import CompressData, compress_model
from tasks.config import CompressConfig
from tasks.onnx_model import model_metadata, open_session
from tasks.report.compress import KEYS, verdict

CFG = CompressConfig(calibration_samples=8, latency_repeats=2, latency_repeats_b32=1, threads=1, prune_samples=16)


def _data(seed: int = 0) -> CompressData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(24, 1, 32, 32)).astype(np.float32)
    return CompressData(x[:12], rng.integers(0, 2, 12), x[12:], rng.integers(0, 2, 12))


def test_every_variant_is_measured_and_the_files_carry_the_metadata(tmp_path: Path) -> None:
    record = image_record()
    model = create_model("resnet_tiny", **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    meta = model_metadata(record, "image")
    rows = compress_model(model, meta, _data(), CFG.model_copy(update={"prune": True}), tmp_path, seed=0)
    assert list(rows) == ["fp32_torch", "fp32_onnx", "int8_onnx", "pruned_torch"]
    for name, row in rows.items():
        assert set(KEYS) <= set(row), name
        assert row["threads"] == 1 and row["latency_ms_b1"] > 0 and row["latency_ms_b32"] > 0
    assert rows["fp32_onnx"]["max_abs_diff"] <= 1e-4
    assert rows["int8_onnx"]["quantization"].startswith("static QDQ, per-channel")
    assert 0.45 <= rows["pruned_torch"]["sparsity"] <= 0.55
    _, int8_meta = open_session(tmp_path / "model.int8.onnx")
    assert int8_meta["threshold"] == 0.4 and int8_meta["quantization"] == rows["int8_onnx"]["quantization"]
    assert "fp32 ONNX parity" in verdict(rows)
