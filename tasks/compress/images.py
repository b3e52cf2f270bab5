"""The compress stage for inspection images: the shipped classifier as fp32 ONNX, int8 ONNX and (optionally) pruned.

The shipped model is the candidate the evaluate stage chose on validation, with the threshold it froze there; the
test images are the label stage's test split, preprocessed exactly as in training (``tasks.image_io.load_views``
with the model's size, channels and geometry, then its normalisation), and the int8 calibration images a seeded draw
from the train split. A tiled model's inputs are tiles (calibrated and fine-tuned on under their image's label); its
accuracy is scored per image, each image as its most defective tile (:func:`tasks.image_io.aggregate_tiles`).
The cache entry holds ``model.onnx``, ``model.int8.onnx`` and ``compress.json``; the report copies the two models
into the run directory beside ``model.pt``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.compress.variants import CompressData, compress_model
from tasks.config import CompressConfig
from tasks.image_classifier import load_model
from tasks.model_file import read_model_file
from tasks.onnx_model import image_geometry, image_views, model_metadata
from tasks.rundir import RunContext


def shipped_weights(train: StageResult, evaluation: dict[str, Any]) -> Path:
    """``weights.pt`` of the candidate the evaluate stage chose (what the report ships as ``model.pt``)."""
    chosen = evaluation.get("selection", {}).get("model")
    entry = train.summary.get("candidates", {}).get(chosen, {"path": train.path})
    return Path(entry["path"]) / "weights.pt"


def image_metadata(record: dict[str, Any], threshold: float | None) -> dict[str, Any]:
    """The ONNX metadata of an image model record with the evaluated threshold (and its resize or tile geometry)."""
    record = {**record, "threshold": threshold}
    return model_metadata(record, "image", preprocessing_extra=image_geometry(record))


def _draw(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, a seeded draw kept in table order (all rows when ``n`` is None or large enough)."""
    if n is None or len(frame) <= n:
        return frame
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[idx]


def compress_data(table: pd.DataFrame, meta: dict[str, Any], cfg: CompressConfig, seed: int) -> CompressData:
    """Test images (all, or a seeded draw of ``max_test_samples``) and a seeded train draw for calibration and
    the pruned model's fine-tune."""
    real = table
    if "synthetic" in table:  # the label stage's table holds real rows only; a train entry's may add synthetic ones
        real = table[~table["synthetic"].astype(str).str.lower().isin(("true", "1"))]
    test = _draw(real[real["split"] == "test"], cfg.max_test_samples, seed)
    n_train = max(cfg.calibration_samples, cfg.prune_samples if cfg.prune else 0)
    train = _draw(real[real["split"] == "train"], n_train, seed + 1)
    x_test, test_counts = image_views(test["path"].tolist(), meta)
    x_train, train_counts = image_views(train["path"].tolist(), meta)
    return CompressData(
        x_test=x_test,
        y_test=test["label"].to_numpy().astype(np.int64),
        x_train=x_train,
        y_train=np.repeat(train["label"].to_numpy().astype(np.int64), train_counts),
        test_counts=test_counts,
    )


def compress_images(
    weights: Path, threshold: float | None, table: pd.DataFrame, cfg: CompressConfig, seed: int, out: Path
) -> dict[str, Any]:
    """Export, quantise and measure the model in ``weights``; writes ``model.onnx``, ``model.int8.onnx`` and
    ``compress.json`` (``variants`` and ``metadata``) to ``out`` and returns that document."""
    record = read_model_file(weights)  # refuses a file that would run code, before anything else touches it
    model, _ = load_model(weights)
    meta = image_metadata(record, threshold)
    data = compress_data(table, meta, cfg, seed)
    variants = compress_model(model, meta, data, cfg, out, seed)
    document = {"variants": variants, "metadata": meta, "n_test": int(len(data.y_test)),
                "n_calibration": int(min(len(data.x_train), cfg.calibration_samples))}  # fmt: skip
    (out / "compress.json").write_text(json.dumps(document, indent=2))
    return document


def compress_summary(document: dict[str, Any], cfg: CompressConfig) -> dict[str, Any]:
    """The record's summary: the headline ratios and whether parity held."""
    v = document["variants"]
    parity = v["fp32_onnx"]["max_abs_diff"]
    return {
        "int8_size_ratio": v["int8_onnx"]["size_bytes"] / v["fp32_onnx"]["size_bytes"],
        "int8_speedup_b1_vs_torch": v["fp32_torch"]["latency_ms_b1"] / v["int8_onnx"]["latency_ms_b1"],
        "fp32_onnx_max_abs_diff": parity,
        "parity_ok": parity is not None and parity <= cfg.parity_tolerance,
        "threads": cfg.threads,
    }


@task(name="compress", cache_policy=NO_CACHE)
def compress_images_task(
    *, cfg: CompressConfig, ctx: RunContext, label: StageResult, train: StageResult, evaluate: StageResult
) -> StageResult:
    """Export the shipped classifier to ONNX (parity checked), quantise it to int8 and measure every variant.

    Args:
        cfg: The compress section.
        ctx: The run's context.
        label: The label stage's record (``splits.csv``: test images, train images for calibration).
        train: The train stage's record (every candidate's ``weights.pt``).
        evaluate: The evaluate stage's record (``evaluation.json``: the chosen candidate and its threshold).
    """
    logger = get_run_logger()
    key = stage_key("compress", label.key, train.key, evaluate.key, cfg, ctx.seed)

    def build(out: Path) -> dict:
        evaluation = json.loads((evaluate.dir / "evaluation.json").read_text())
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        threshold = evaluation["test"].get("threshold")
        document = compress_images(shipped_weights(train, evaluation), threshold, table, cfg, ctx.seed, out)
        return compress_summary(document, cfg)

    result = run_stage(StageCache(ctx.cache_root), "compress", key, build, ctx.refreshes("compress"))
    if not result.error:
        s = result.summary
        logger.info(
            "compress: int8 file %.2f of fp32, batch-1 %.1fx faster than fp32 torch, fp32 ONNX parity %.2e%s",
            s["int8_size_ratio"],
            s["int8_speedup_b1_vs_torch"],
            s["fp32_onnx_max_abs_diff"],
            "" if s["parity_ok"] else f" (above the tolerance {cfg.parity_tolerance:g})",
        )
    return result
